from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import override

from consults.models import Referral


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def notify_report_signed(referral_id: int) -> None:
    """Tell the referring clinician that the specialist has answered. The e-mail names no
    patient (e-mail is not a confidential channel): it links to the referral."""
    referral = Referral.objects.select_related("referring_clinician").get(pk=referral_id)
    clinician = referral.referring_clinician
    with override(clinician.language or settings.LANGUAGE_CODE):
        send_mail(
            subject=_("Telemed: the consult report for referral #%(id)s is signed")
            % {"id": referral.pk},
            message=_("The specialist has signed the report. Read it here: %(url)s")
            % {"url": settings.SITE_URL + reverse("consults:referral-detail", args=[referral.pk])},
            from_email=None,
            recipient_list=[clinician.email],
        )
