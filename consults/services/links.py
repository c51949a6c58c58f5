"""Signed, unguessable, expiring links that let a patient (or a relative) join one session
without an account or password."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services.audit import record_event
from consults.models import Appointment, JoinLink, Participant

# A link opens from this long before the start until this long after the end.
OPENS_BEFORE = dt.timedelta(minutes=30)
CLOSES_AFTER = dt.timedelta(minutes=30)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def issue_join_link(*, participant: Participant) -> str:
    """A new link for `participant` (earlier ones are revoked); returns its full URL.

    The token has 256 bits of randomness; only its hash is stored, so a database leak
    reveals no working link.
    """
    now = timezone.now()
    participant.links.filter(revoked_at__isnull=True).update(revoked_at=now)
    token = secrets.token_urlsafe(32)
    JoinLink.objects.create(participant=participant, token_hash=_hash(token))
    return settings.SITE_URL + reverse("join:link", args=[token])


@dataclass(frozen=True)
class LinkCheck:
    """What a link is good for right now: `problem` is None when it may be used."""

    link: JoinLink | None
    problem: str | None  # "unknown", "revoked", "cancelled", "too_early", "expired"
    opens_at: dt.datetime | None = None


def check_join_link(*, token: str, at: dt.datetime | None = None) -> LinkCheck:
    at = at or timezone.now()
    link = (
        JoinLink.objects.select_related("participant__appointment__referral__patient")
        .filter(token_hash=_hash(token))
        .first()
    )
    if link is None:
        return LinkCheck(None, "unknown")
    appointment = link.participant.appointment
    if link.revoked_at is not None or not link.participant.is_active:
        return LinkCheck(link, "revoked")
    if appointment.status == Appointment.Status.CANCELLED:
        return LinkCheck(link, "cancelled")
    opens_at = appointment.starts_at - OPENS_BEFORE
    if at < opens_at:
        return LinkCheck(link, "too_early", opens_at)
    if at > appointment.ends_at + CLOSES_AFTER or appointment.status == "completed":
        return LinkCheck(link, "expired")
    return LinkCheck(link, None, opens_at)


def use_join_link(*, link: JoinLink) -> None:
    """Note the first use on the link, and every use in the audit log: the page names the
    patient's appointment, so opening it is a read of patient data."""
    if link.first_used_at is None:
        JoinLink.objects.filter(pk=link.pk, first_used_at__isnull=True).update(
            first_used_at=timezone.now()
        )
    participant = link.participant
    referral = participant.appointment.referral
    record_event(
        actor=None,
        actor_label=participant.name,
        action=AuditEvent.Action.VIEW,
        target=participant.appointment,
        patient_id=referral.patient_id,
        region=referral.region,
        detail={"join_link": participant.pk},
    )


def held_join_link(
    *, appointment_id: int, link_id: object, participant_id: object
) -> JoinLink | None:
    """The link a browser joined `appointment_id` by (the ids it keeps in its session), if
    that link still holds: not replaced, its participant still invited. The join pages and
    the call both ask this; each then applies its own rule on the appointment's state."""
    return (
        JoinLink.objects.select_related("participant__appointment__specialist")
        .filter(
            pk=link_id,
            participant_id=participant_id,
            participant__appointment_id=appointment_id,
            participant__is_active=True,
            revoked_at__isnull=True,
        )
        .first()
    )
