"""Background work of the ehr app: e-mailing diary alerts to the patient's clinicians."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from ehr.models import Alert

# Remembered for a week: long enough to cover every retry of the same alert.
_SENT_FOR = 7 * 24 * 3600


def alert_recipients(alert: Alert) -> list[User]:
    """The clinicians of the patient's organization (active memberships, with an address)."""
    return list(
        User.objects.filter(
            is_active=True,
            memberships__organization_id=alert.patient.organization_id,
            memberships__role=Membership.Role.CLINICIAN,
            memberships__is_active=True,
        )
        .exclude(email="")
        .distinct()
    )


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_diary_alert_email(alert_id: int) -> int:
    """One message per clinician, in their own language; returns how many were sent.

    Safe to run twice: the alert's id marks it as mailed in the shared cache, so a redelivered
    task (acks_late) sends nothing more. The message names no patient and carries no
    identity (e-mail is not a confidential channel): the reading and a link to log in.
    """
    alert = Alert.objects.select_related("patient").filter(pk=alert_id).first()
    if alert is None or not alert.is_open:
        return 0
    # The time makes the key unique even where ids are reused (a test database rolled back).
    marker = f"ehr:diary-alert-mailed:{alert_id}:{alert.created_at.timestamp()}"
    if not cache.add(marker, True, _SENT_FOR):
        return 0
    link = settings.SITE_URL + reverse("diary:patient-diary", args=[alert.patient_id])
    sent = 0
    try:
        for clinician in alert_recipients(alert):
            with translation.override(clinician.language or settings.LANGUAGE_CODE):
                subject = _("Health diary alert: %(measure)s out of range") % {
                    "measure": alert.get_measure_display()
                }
                body = _(
                    "A patient of your clinic recorded a reading outside the target range "
                    "set for them.\n\n%(measure)s: %(message)s\n\nOpen the patient's diary "
                    "(log-in required):\n%(link)s\n"
                ) % {"measure": alert.get_measure_display(), "message": alert.message, "link": link}
            sent += send_mail(subject, body, None, [clinician.email])
    except Exception:
        # Not mailed after all: let the retry send it.
        cache.delete(marker)
        raise
    return sent
