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
from ehr.models import Allergy, Condition, Document, Medication, Observation, Patient
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


@dataclass(frozen=True)
class TimelineItem:
    at: object
    kind: str
    entry: object


@dataclass(frozen=True)
class PatientRecord:
    patient: Patient
    conditions: list
    medications: list
    allergies: list
    latest_observations: list
    timeline: Page
    can_change: bool


def latest_observation_per_code(patient: Patient, *, as_of: object = None) -> list[Observation]:
    """The most recent observation of each code (vitals and results), newest first."""
    observations = patient.observation_set.exclude(code="")
    if as_of is not None:
        observations = observations.filter(effective_at__lte=as_of)
    latest: dict[str, Observation] = {}
    for observation in observations.order_by("-effective_at")[:500]:
        latest.setdefault(observation.code, observation)
    return list(latest.values())


def _timeline(patient: Patient, page: int | str) -> Page:
    items: list[TimelineItem] = []
    for encounter in patient.encounter_set.all()[:200]:
        items.append(TimelineItem(encounter.started_at, "encounter", encounter))
    for condition in patient.condition_set.all()[:200]:
        items.append(TimelineItem(condition.recorded_at, "condition", condition))
    for observation in patient.observation_set.all()[:300]:
        items.append(TimelineItem(observation.effective_at, "observation", observation))
    for note in patient.clinicalnote_set.select_related("recorded_by")[:200]:
        items.append(TimelineItem(note.recorded_at, "note", note))
    for document in patient.document_set.all()[:200]:
        items.append(TimelineItem(document.recorded_at, "document", document))
    for medication in patient.medication_set.all()[:200]:
        items.append(TimelineItem(medication.recorded_at, "medication", medication))
    items.sort(key=lambda item: item.at, reverse=True)
    return Paginator(items, 30).get_page(page)


def patient_record(*, user: User, patient_id: int, page: int | str = 1) -> PatientRecord:
    """The record at a glance: problems, medications, allergies, latest values, timeline."""
    patient = patient_for(user=user, patient_id=patient_id)
    return PatientRecord(
        patient=patient,
        conditions=list(
            patient.condition_set.exclude(clinical_status=Condition.ClinicalStatus.RESOLVED)
        ),
        medications=list(patient.medication_set.filter(status=Medication.Status.ACTIVE)),
        allergies=list(patient.allergy_set.filter(status=Allergy.Status.ACTIVE)),
        latest_observations=latest_observation_per_code(patient)[:12],
        timeline=_timeline(patient, page),
        can_change=access.can(user, access.CHANGE, patient),
    )


def record_entry_for(*, user: User, model: type, entry_id: int, patient_id: int) -> object:
    """One entry of a record, for someone allowed to change it (404 otherwise)."""
    entry = (
        access.scope(user, access.CHANGE, model.objects.filter(patient_id=patient_id))
        .filter(pk=entry_id)
        .first()
    )
    if entry is None:
        raise Http404("No such entry")
    return entry


def document_for(*, user: User, patient_id: int, document_id: int) -> Document:
    """A document of the record, for someone allowed to read it; the read is audited."""
    patient = patient_for(user=user, patient_id=patient_id)
    document = patient.document_set.filter(pk=document_id).first()
    if document is None:
        raise Http404("No such document")
    record_event(
        actor=user,
        action=AuditEvent.Action.VIEW,
        target=document,
        patient_id=patient.pk,
        region=patient.organization.region,
    )
    return document
