"""Template tags of scheduling: the referral page's panel, the day's sessions, unread count."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils import timezone

from accounts import access
from consults.models import Appointment, Participant, Referral
from consults.policies import BOOK
from consults.services import notifications, scheduling

register = template.Library()

# How far ahead the slot picker looks, and how many slots it offers.
PICKER_DAYS = 14
PICKER_LIMIT = 80


@register.inclusion_tag("consults/_scheduling.html", takes_context=True)
def scheduling_panel(context: template.Context, referral: Referral) -> dict[str, Any]:
    """The referral's sessions and, for those who may book, the slot picker and the
    reschedule / cancel forms. Times show in the viewer's zone (activated per user)."""
    user = context["request"].user
    can_book = access.can(user, BOOK, referral)
    appointments = list(
        referral.appointments.select_related("specialist").prefetch_related("participants")
    )
    has_booking = any(a.status == Appointment.Status.BOOKED for a in appointments)
    slots: list[scheduling.Slot] = []
    if can_book and referral.specialist_id and referral.status in ("triaged", "scheduled"):
        now = timezone.now()
        slots = scheduling.free_slots(
            specialist=referral.specialist, start=now, end=now + dt.timedelta(days=PICKER_DAYS)
        )[:PICKER_LIMIT]
    return {
        "referral": referral,
        "appointments": appointments,
        "can_book": can_book and referral.status == Referral.Status.TRIAGED,
        "can_change": can_book and has_booking,
        "slots": slots,
        "kinds": Appointment.Kind.choices,
        "guest_roles": [
            (role.value, role.label)
            for role in (Participant.Role.FAMILY, Participant.Role.INTERPRETER)
        ],
        "csrf_token": context.get("csrf_token"),
        "time_zone": timezone.get_current_timezone_name(),
    }


@register.inclusion_tag("consults/_appointments_card.html", takes_context=True)
def appointments_card(context: template.Context) -> dict[str, Any]:
    """Today's sessions of the logged-in user (an audited read: it names patients)."""
    return {"appointments": scheduling.appointments_today(context["request"].user)}


@register.simple_tag(takes_context=True)
def unread_notifications_count(context: template.Context) -> int:
    """`{% unread_notifications_count as unread %}` for the header badge."""
    request = context.get("request")
    return notifications.unread_notifications_count(request.user) if request else 0
