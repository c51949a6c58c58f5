"""Reads of patient data. Each one checks access and writes the audit event itself."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Q, QuerySet
from django.http import Http404

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event, record_patient_reads
from ehr.models import Patient
from ehr.transliteration import skeleton

READ_ACTIONS = (AuditEvent.Action.VIEW, AuditEvent.Action.LIST, AuditEvent.Action.EXPORT)


def patients_visible_to(user: User) -> QuerySet[Patient]:
    """The patients `user` may read; no data is returned, so nothing is audited here."""
    return access.scope(user, access.VIEW, Patient.objects.select_related("organization"))


def _parse_date(word: str) -> dt.date | None:
    for pattern in ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(word, pattern).date()  # noqa: DTZ007 (a date)
        except ValueError:
            continue
    return None


def patient_search_condition(query: str) -> Q:
    """Words of the name in any script (transliterated), a PIN or its start, a birth date."""
    condition = Q()
    for word in query.split():
        born = _parse_date(word)
        if born:
            condition &= Q(birth_date=born)
        elif word.isdigit():
            condition &= Q(pin__startswith=word)
        else:
            condition &= Q(search_key__contains=skeleton(word))
    return condition


def search_patients(*, user: User, query: str = "", page: int | str = 1) -> Page:
    """One page of the patients `user` may read, matching `query` (see above)."""
    patients = patients_visible_to(user)
    query = query.strip()
    if query:
        patients = patients.filter(patient_search_condition(query))
    result = Paginator(patients, 50).get_page(page)
    record_patient_reads(actor=user, patients=result.object_list)
    return result


def patient_for(*, user: User, patient_id: int, action: str = access.VIEW) -> Patient:
    """The patient, if `user` may perform `action` on them; otherwise 404, the same answer as
    for a patient who does not exist, so that a refusal leaks nothing. Both are audited."""
    patient = Patient.objects.select_related("organization").filter(pk=patient_id).first()
    if patient is None or not access.can(user, action, patient):
        record_event(
            actor=user,
            action=AuditEvent.Action.VIEW,
            outcome=AuditEvent.Outcome.DENIED,
            target=patient,
            patient_id=patient.pk if patient else None,
            region=patient.organization.region if patient else "",
            detail={"requested_patient_id": patient_id, "requested_action": action},
        )
        raise Http404("No such patient")
    record_event(
        actor=user,
        action=AuditEvent.Action.VIEW,
        target=patient,
        patient_id=patient.pk,
        region=patient.organization.region,
    )
    return patient


@dataclass(frozen=True)
class RecordReader:
    actor_label: str
    actor_roles: str
    reads: int
    last_read_at: object


def who_read_record(*, user: User, patient_id: int) -> tuple[Patient, list[RecordReader]]:
    """For the patient: who has read their record, how many times, and when last."""
    patient = patient_for(user=user, patient_id=patient_id, action="view_access_log")
    rows = (
        AuditEvent.objects.filter(
            patient_id=patient.pk, action__in=READ_ACTIONS, outcome=AuditEvent.Outcome.ALLOWED
        )
        .exclude(actor_user_id=patient.user_id)
        .values("actor_user_id", "actor_label", "actor_roles")
        .annotate(reads=Count("id"), last_read_at=Max("at"))
        .order_by("-last_read_at")
    )
    readers = [
        RecordReader(
            actor_label=row["actor_label"],
            actor_roles=row["actor_roles"],
            reads=row["reads"],
            last_read_at=row["last_read_at"],
        )
        for row in rows
    ]
    return patient, readers
