"""Writing the audit log. Selectors call these on every read of patient data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from accounts import request_context
from accounts.models import AuditEvent, User


def _actor_fields(actor: User | None) -> dict[str, Any]:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return {"actor_user_id": None, "actor_label": "", "actor_roles": ""}
    return {
        "actor_user_id": actor.pk,
        "actor_label": f"{actor.full_name} <{actor.email}>",
        "actor_roles": ",".join(sorted(actor.roles)),
    }


def _home_region(actor: User | None) -> str:
    # Events that concern no patient (log-ins) belong to the region of the actor's organization.
    if actor is None or not getattr(actor, "is_authenticated", False):
        return ""
    membership = actor.memberships.filter(is_active=True).select_related("organization").first()
    return membership.organization.region if membership else ""


def region_of_account(email: str) -> str:
    """The region of the account with this e-mail, or "" if there is no such account."""
    user = User.objects.filter(email__iexact=email).first() if email else None
    return _home_region(user)


def _target_fields(target: models.Model | None) -> dict[str, Any]:
    if target is None:
        return {"object_type": "", "object_id": "", "object_label": ""}
    return {
        "object_type": target._meta.label_lower,
        "object_id": str(target.pk),
        "object_label": str(target)[:300],
    }


def build_audit_event(
    *,
    actor: User | None,
    action: str,
    outcome: str,
    target: models.Model | None,
    patient_id: int | None,
    region: str,
    detail: dict[str, Any] | None,
    actor_label: str = "",
) -> AuditEvent:
    context = request_context.current()
    fields = _actor_fields(actor)
    if actor_label and not fields["actor_label"]:
        fields["actor_label"] = actor_label
    return AuditEvent(
        action=action,
        outcome=outcome,
        patient_id=patient_id,
        region=region or _home_region(actor),
        ip_address=context.ip_address,
        channel=context.channel,
        detail=detail or {},
        **fields,
        **_target_fields(target),
    )


def record_event(
    *,
    actor: User | None,
    action: str,
    outcome: str = AuditEvent.Outcome.ALLOWED,
    target: models.Model | None = None,
    patient_id: int | None = None,
    region: str = "",
    detail: dict[str, Any] | None = None,
    actor_label: str = "",
) -> AuditEvent:
    """Append one event to the audit log; the address and channel come from the request."""
    event = build_audit_event(
        actor=actor,
        action=action,
        outcome=outcome,
        target=target,
        patient_id=patient_id,
        region=region,
        detail=detail,
        actor_label=actor_label,
    )
    event.save()
    return event


def record_patient_reads(
    *, actor: User, patients: Iterable[Any], action: str = AuditEvent.Action.LIST
) -> None:
    """One event per patient shown in a list or search result, written in one query."""
    AuditEvent.objects.bulk_create(
        build_audit_event(
            actor=actor,
            action=action,
            outcome=AuditEvent.Outcome.ALLOWED,
            target=patient,
            patient_id=patient.pk,
            region=patient.organization.region,
            detail=None,
        )
        for patient in patients
    )
