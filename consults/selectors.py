"""Reads of referrals, filtered by who asks; reading one is a read of patient data (audited)."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import Http404
from django.utils import timezone

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from consults.models import Referral
from consults.policies import TRIAGE

Status = Referral.Status
URGENCY_ORDER = Case(
    When(urgency=Referral.Urgency.EMERGENCY, then=Value(0)),
    When(urgency=Referral.Urgency.URGENT, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def referrals_visible_to(user: User) -> QuerySet[Referral]:
    return access.scope(
        user,
        access.VIEW,
        Referral.objects.select_related("patient", "specialty", "referring_organization"),
    )


def referral_for(*, user: User, referral_id: int) -> Referral:
    referral = referrals_visible_to(user).filter(pk=referral_id).first()
    if referral is None:
        record_event(
            actor=user,
            action=AuditEvent.Action.VIEW,
            outcome=AuditEvent.Outcome.DENIED,
            detail={"requested_referral_id": referral_id},
        )
        raise Http404("No such referral")
    record_event(
        actor=user,
        action=AuditEvent.Action.VIEW,
        target=referral,
        patient_id=referral.patient_id,
        region=referral.region,
    )
    return referral


def triage_queue(
    *,
    user: User,
    organization_id: int | None = None,
    specialty_id: int | None = None,
    status: str | None = None,
) -> list[Referral]:
    """The coordinator's queue: most urgent first, then longest waiting; `is_overdue` set on
    each (urgent untriaged after 2 hours, routine after 2 working days)."""
    referrals = access.scope(
        user,
        TRIAGE,
        Referral.objects.select_related("patient", "specialty", "referring_organization"),
    ).exclude(status=Status.DRAFT)
    referrals = referrals.filter(status=status or Status.SUBMITTED)
    if organization_id:
        referrals = referrals.filter(referring_organization_id=organization_id)
    if specialty_id:
        referrals = referrals.filter(specialty_id=specialty_id)
    ordered = referrals.annotate(urgency_rank=URGENCY_ORDER).order_by(
        "urgency_rank", "submitted_at"
    )
    queue = list(ordered)
    now = timezone.now()
    for referral in queue:
        referral.is_overdue = referral.is_overdue_at(now)
    return queue
