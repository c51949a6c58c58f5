"""Template tag of session recordings: the referral page's panel of recorded sessions."""

from __future__ import annotations

from typing import Any

from django import template

from consults.models import Referral
from consults.services.recording import recordings_of

register = template.Library()


@register.inclusion_tag("consults/_recordings.html", takes_context=True)
def recordings_panel(context: template.Context, referral: Referral) -> dict[str, Any]:
    """The recordings of the referral's sessions this user may watch, with a player each.
    (The page's own read is audited; each play or download of a file is audited too.)"""
    user = context["request"].user
    appointment_ids = referral.appointments.values("pk")
    return {"recordings": list(recordings_of(user=user, appointment_ids=appointment_ids))}
