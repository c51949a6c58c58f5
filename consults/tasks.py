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


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_appointment_notifications(appointment_id: int, event: str) -> None:
    """Invitations, changes and cancellations, queued by the scheduling services."""
    from consults.models import Appointment
    from consults.services.notifications import notify_appointment

    appointment = Appointment.objects.select_related("specialist").get(pk=appointment_id)
    notify_appointment(appointment=appointment, event=event)


@shared_task
def send_due_reminders() -> int:
    """Every minute (CELERY_BEAT_SCHEDULE): the 24-hour and 15-minute reminders, each once."""
    from consults.services import notifications

    return notifications.send_due_reminders()
