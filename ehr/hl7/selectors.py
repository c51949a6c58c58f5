"""Reads of lab messages for the review queue. A message holds patient data (its raw text
names the patient), so each read checks the LabMessage policy and is audited here."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from ehr.models import LabMessage

NEEDS_REVIEW = (LabMessage.Status.UNMATCHED, LabMessage.Status.REJECTED)


def lab_messages_visible_to(user: User) -> QuerySet[LabMessage]:
    return access.scope(
        user, access.VIEW, LabMessage.objects.select_related("patient__organization")
    )


def _audit_read(user: User, lab_message: LabMessage, action: str, outcome: str) -> None:
    patient = lab_message.patient
    record_event(
        actor=user,
        action=action,
        outcome=outcome,
        target=lab_message,
        patient_id=patient.pk if patient else None,
        region=patient.organization.region if patient else "",
    )


def lab_message_page(*, user: User, status: str = "", page: int | str = 1) -> Page:
    """One page of the messages `user` may see; by default those waiting for review."""
    messages = lab_messages_visible_to(user).defer("raw")
    if status in LabMessage.Status.values:
        messages = messages.filter(status=status)
    elif status != "all":
        messages = messages.filter(status__in=NEEDS_REVIEW)
    result = Paginator(messages, 50).get_page(page)
    for lab_message in result.object_list:
        _audit_read(user, lab_message, AuditEvent.Action.LIST, AuditEvent.Outcome.ALLOWED)
    return result


def lab_message_for(*, user: User, lab_message_id: int) -> LabMessage:
    """The message if `user` may see it; otherwise 404, as for one that does not exist."""
    lab_message = (
        LabMessage.objects.select_related("patient__organization").filter(pk=lab_message_id).first()
    )
    if lab_message is None or not access.can(user, access.VIEW, lab_message):
        record_event(
            actor=user,
            action=AuditEvent.Action.VIEW,
            outcome=AuditEvent.Outcome.DENIED,
            target=lab_message,
            patient_id=lab_message.patient_id if lab_message else None,
            detail={"requested_lab_message_id": lab_message_id},
        )
        raise Http404("No such lab message")
    _audit_read(user, lab_message, AuditEvent.Action.VIEW, AuditEvent.Outcome.ALLOWED)
    return lab_message
