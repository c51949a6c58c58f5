"""Registering patients and keeping their identity data."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q

from accounts import access
from accounts.models import AuditEvent, Organization, User
from accounts.services.audit import record_event
from ehr.models import Patient
from ehr.transliteration import skeleton, to_latin

IDENTITY_FIELDS = [
    "pin",
    "family_name",
    "given_name",
    "patronymic",
    "family_name_latin",
    "given_name_latin",
    "birth_date",
    "sex",
    "phone",
    "address",
    "region",
]


class PossibleDuplicate(ValidationError):
    """The new patient may already be registered: the caller offers the existing ones."""

    def __init__(self, candidates: list[Patient]) -> None:
        super().__init__("This patient may already be registered.", code="possible_duplicate")
        self.candidates = candidates


def search_key_for(patient: Patient) -> str:
    names = [patient.family_name, patient.given_name, patient.patronymic]
    names += [patient.family_name_latin, patient.given_name_latin]
    return " ".join(dict.fromkeys(skeleton(name) for name in names if name))


def _fill_derived_fields(patient: Patient) -> None:
    if not patient.family_name_latin:
        patient.family_name_latin = to_latin(patient.family_name)
    if not patient.given_name_latin:
        patient.given_name_latin = to_latin(patient.given_name)
    if not patient.region:
        patient.region = patient.organization.region
    patient.pin = patient.pin or None
    patient.search_key = search_key_for(patient)


def possible_duplicates(*, fields: dict[str, Any], exclude_id: int | None = None) -> list[Patient]:
    """Patients with the same PIN, or the same name (in any spelling) and birth date."""
    condition = Q()
    if fields.get("pin"):
        condition |= Q(pin=fields["pin"])
    if fields.get("family_name") and fields.get("birth_date"):
        family = skeleton(fields["family_name"])
        given = skeleton(fields.get("given_name", ""))
        condition |= Q(birth_date=fields["birth_date"], search_key__contains=family) & Q(
            search_key__contains=given
        )
    if not condition:
        return []
    candidates = Patient.objects.filter(condition).select_related("organization")
    if exclude_id:
        candidates = candidates.exclude(pk=exclude_id)
    return list(candidates[:10])


@transaction.atomic
def register_patient(
    *,
    registered_by: User,
    organization: Organization,
    confirmed_new: bool = False,
    user: User | None = None,
    **fields: Any,
) -> Patient:
    """Register a patient at `organization` (a clinic of the clinician registering them).

    Raises PossibleDuplicate when the PIN is taken or a patient with the same name and birth
    date exists, unless `confirmed_new` (a different person with the same name); a taken
    PIN can never be confirmed.
    """
    probe = Patient(organization=organization)
    # Same rule as the CREATE policy on patients: clinicians of that organization.
    if not access.can_create(registered_by, probe):
        raise PermissionDenied
    duplicates = possible_duplicates(fields=fields)
    same_pin = [p for p in duplicates if fields.get("pin") and p.pin == fields["pin"]]
    if same_pin or (duplicates and not confirmed_new):
        raise PossibleDuplicate(same_pin or duplicates)
    for name in IDENTITY_FIELDS:
        if name in fields:
            setattr(probe, name, fields[name])
    probe.user = user
    _fill_derived_fields(probe)
    probe.full_clean()
    probe.save()
    record_event(
        actor=registered_by,
        action=AuditEvent.Action.CREATE,
        target=probe,
        patient_id=probe.pk,
        region=organization.region,
    )
    return probe


@transaction.atomic
def update_patient(*, patient: Patient, changed_by: User, **fields: Any) -> Patient:
    """Change a patient's identity data (a clinician of the patient's organization)."""
    access.ensure_can(changed_by, access.CHANGE, patient)
    if fields.get("pin") and Patient.objects.filter(pin=fields["pin"]).exclude(pk=patient.pk):
        raise ValidationError({"pin": "Another patient has this PIN."})
    for name, value in fields.items():
        if name not in IDENTITY_FIELDS:
            raise TypeError(f"Not an identity field: {name}")
        setattr(patient, name, value)
    _fill_derived_fields(patient)
    patient.full_clean()
    patient.save()
    record_event(
        actor=changed_by,
        action=AuditEvent.Action.UPDATE,
        target=patient,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"fields": sorted(fields)},
    )
    return patient


def refresh_search_key(patient: Patient) -> None:
    """For code that creates patients outside these services (imports, demo data)."""
    _fill_derived_fields(patient)
    Patient.objects.filter(pk=patient.pk).update(
        search_key=patient.search_key,
        family_name_latin=patient.family_name_latin,
        given_name_latin=patient.given_name_latin,
        region=patient.region,
    )
