"""Sessions as they happen: the specialist opens a booked session; a patient's coming visits.

The video call (signaling, media broker) builds on this: opening the call page will call
`start_session`.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from consults.models import Appointment, Referral
from consults.services.referrals import move_referral
from consults.services.scheduling import appointments_visible_to


@transaction.atomic
def start_session(*, appointment: Appointment, specialist: User) -> Appointment:
    """The specialist opens the session (from 15 minutes before its start until its end);
    the referral is then "in session"."""
    if appointment.specialist_id != specialist.pk:
        raise PermissionDenied
    if not appointment.is_joinable_at(timezone.now()):
        raise ValidationError(_("A session opens 15 minutes before its start, until its end."))
    referral = Referral.objects.select_for_update().get(pk=appointment.referral_id)
    if referral.status != Referral.Status.IN_SESSION:
        move_referral(referral=referral, to=Referral.Status.IN_SESSION, actor=specialist)
        referral.save(update_fields=["status"])
    return appointment


def upcoming_visits(user: User, *, limit: int = 5) -> list[Appointment]:
    """Booked sessions the user takes part in, from now on (a patient's dashboard)."""
    return list(
        appointments_visible_to(user)
        .filter(
            participants__user=user,
            participants__is_active=True,
            status=Appointment.Status.BOOKED,
            ends_at__gte=timezone.now(),
        )
        .distinct()
        .order_by("starts_at")[:limit]
    )
