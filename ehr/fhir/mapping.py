"""The record as FHIR R4 resources (JSON-ready dicts, validated with fhir.resources' R4B models).

No access checks and no audit here: the selectors and views that call this do both.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel

from ehr.fhir import codes
from ehr.fhir.resources import model_for
from ehr.models import (
    Allergy,
    ClinicalNote,
    Condition,
    Document,
    Encounter,
    Medication,
    Observation,
    Patient,
)
from ehr.selectors import latest_observation_per_code

_URN_NAMESPACE = uuid.UUID("7d3d4a0e-4c7f-4b8e-9a3c-2f1f3c6f0b51")


@dataclass(frozen=True)
class Links:
    """How resources of one bundle point at each other.

    With a base URL (an HTTP answer), fullUrls are `[base]/Type/id` and references relative
    (`Patient/7`), as FHIR's RESTful form has it. Without one (a file such as the extract),
    both are stable `urn:uuid:`s, because a relative reference means nothing outside a server.
    """

    base_url: str = ""
    # A summary leaves encounters out, so its entries must not point at them.
    with_encounters: bool = True

    def full_url(self, resource_type: str, resource_id: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{resource_type}/{resource_id}"
        return f"urn:uuid:{uuid.uuid5(_URN_NAMESPACE, f'{resource_type}/{resource_id}')}"

    def reference(self, resource_type: str, resource_id: str) -> dict[str, str]:
        if self.base_url:
            return {"reference": f"{resource_type}/{resource_id}"}
        return {"reference": self.full_url(resource_type, resource_id)}


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as its fhir.resources model dumps it; raises if it does not validate."""
    model: type[FHIRResourceModel] = model_for(resource["resourceType"])
    return model.model_validate(resource).model_dump(mode="json")


def _instant(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _number(value: Any) -> Decimal:
    # Decimal keeps 120 as 120 (not 120.0) and 36.6 exact; trailing zeros of the column go.
    number = Decimal(str(value))
    return number.quantize(Decimal(1)) if number == number.to_integral() else number.normalize()


def _quantity(value: Any, unit: str) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": _number(value)}
    if unit:
        quantity["unit"] = unit
    return quantity


def identifier_of(entry: Any, kind: str) -> dict[str, str]:
    """A row keeps the identifier it came with; one born here is named by its id."""
    if entry.source_id:
        identifier = {"value": entry.source_id}
        if entry.source_system:
            identifier["system"] = entry.source_system
        return identifier
    return {"system": codes.local_identifier_system(kind), "value": str(entry.pk)}


def _coded(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _drop_empty(resource: dict[str, Any]) -> dict[str, Any]:
    # FHIR forbids empty strings, lists and objects; leave such elements out altogether.
    return {key: value for key, value in resource.items() if value not in (None, "", [], {})}


def patient_resource(patient: Patient) -> dict[str, Any]:
    given = [name for name in (patient.given_name, patient.patronymic) if name]
    names: list[dict[str, Any]] = [
        _drop_empty(
            {"use": "official", "text": patient.full_name, "family": patient.family_name,
             "given": given}
        )
    ]  # fmt: skip
    if patient.family_name_latin or patient.given_name_latin:
        names.append(
            _drop_empty(
                {
                    "extension": [{"url": codes.NAME_REPRESENTATION, "valueCode": "ABC"}],
                    "use": "official",
                    "text": patient.latin_name,
                    "family": patient.family_name_latin,
                    "given": [patient.given_name_latin] if patient.given_name_latin else [],
                }
            )
        )
    address = _drop_empty({"text": patient.address, "state": patient.region})
    organization = patient.organization
    return _drop_empty(
        {
            "resourceType": "Patient",
            "id": str(patient.pk),
            "identifier": [{"system": codes.PIN_SYSTEM, "value": patient.pin}]
            if patient.pin
            else [],
            "name": names,
            "telecom": [{"system": "phone", "value": patient.phone}] if patient.phone else [],
            "gender": patient.sex,
            "birthDate": _date(patient.birth_date),
            "address": [address] if address else [],
            "managingOrganization": {
                "identifier": {"system": codes.ORGANIZATION_SYSTEM, "value": str(organization.pk)},
                "display": organization.name,
            },
        }
    )


def encounter_resource(encounter: Encounter, links: Links) -> dict[str, Any]:
    class_code, class_display = codes.ENCOUNTER_CLASS[encounter.kind]
    provider = None
    if encounter.organization_id:
        provider = {
            "identifier": {
                "system": codes.ORGANIZATION_SYSTEM,
                "value": str(encounter.organization_id),
            },
            "display": encounter.organization.name,
        }
    return _drop_empty(
        {
            "resourceType": "Encounter",
            "id": str(encounter.pk),
            "identifier": [identifier_of(encounter, "encounter")],
            "status": encounter.status,
            "class": {"system": codes.ACT_CODE, "code": class_code, "display": class_display},
            "type": [
                {
                    **_coded(codes.ENCOUNTER_KIND_SYSTEM, encounter.kind),
                    "text": str(encounter.get_kind_display()),
                }
            ],
            "subject": links.reference("Patient", str(encounter.patient_id)),
            "period": _drop_empty(
                {"start": _instant(encounter.started_at), "end": _instant(encounter.ended_at)}
            ),
            "reasonCode": [{"text": encounter.reason}] if encounter.reason else [],
            "serviceProvider": provider,
        }
    )


def _encounter_reference(entry: Any, links: Links) -> dict[str, str] | None:
    if not (entry.encounter_id and links.with_encounters):
        return None
    return links.reference("Encounter", str(entry.encounter_id))


def condition_resource(condition: Condition, links: Links) -> dict[str, Any]:
    category = "encounter-diagnosis" if condition.encounter_id else "problem-list-item"
    return _drop_empty(
        {
            "resourceType": "Condition",
            "id": str(condition.pk),
            "identifier": [identifier_of(condition, "condition")],
            "clinicalStatus": _coded(codes.CONDITION_CLINICAL, condition.clinical_status),
            "category": [_coded(codes.CONDITION_CATEGORY, category)],
            "code": {
                **_coded(codes.ICD10, condition.icd10_code, condition.description),
                "text": condition.description,
            },
            "subject": links.reference("Patient", str(condition.patient_id)),
            "encounter": _encounter_reference(condition, links),
            "onsetDateTime": _date(condition.onset_date),
            "recordedDate": _instant(condition.recorded_at),
            "note": [{"text": condition.note}] if condition.note else [],
        }
    )


def medication_resource(medication: Medication, links: Links) -> dict[str, Any]:
    dosage = _drop_empty(
        {
            "text": medication.dose,
            "timing": {"code": {"text": medication.frequency}} if medication.frequency else None,
            "route": {"text": medication.route} if medication.route else None,
        }
    )
    return _drop_empty(
        {
            "resourceType": "MedicationStatement",
            "id": str(medication.pk),
            "identifier": [identifier_of(medication, "medication")],
            "status": medication.status,
            "medicationCodeableConcept": {"text": medication.name},
            "subject": links.reference("Patient", str(medication.patient_id)),
            "effectivePeriod": _drop_empty(
                {"start": _date(medication.start_date), "end": _date(medication.end_date)}
            ),
            "dateAsserted": _instant(medication.recorded_at),
            "note": [{"text": medication.note}] if medication.note else [],
            "dosage": [dosage] if dosage else [],
        }
    )


def allergy_resource(allergy: Allergy, links: Links) -> dict[str, Any]:
    reaction = None
    if allergy.reaction or allergy.severity:
        # FHIR requires a manifestation in every reaction; say "unknown" rather than invent one.
        manifestation = (
            {"text": allergy.reaction} if allergy.reaction else _coded(codes.DATA_ABSENT, "unknown")
        )
        reaction = _drop_empty({"manifestation": [manifestation], "severity": allergy.severity})
    return _drop_empty(
        {
            "resourceType": "AllergyIntolerance",
            "id": str(allergy.pk),
            "identifier": [identifier_of(allergy, "allergy")],
            "clinicalStatus": _coded(codes.ALLERGY_CLINICAL, allergy.status),
            "code": {"text": allergy.substance},
            "patient": links.reference("Patient", str(allergy.patient_id)),
            "recordedDate": _instant(allergy.recorded_at),
            "reaction": [reaction] if reaction else [],
        }
    )


def _observation_code(code: str, display: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": display} if display else {}
    if code:
        concept.update(_coded(codes.LOINC, code, display))
    return concept or {"text": code}


def observation_resource(observation: Observation, links: Links) -> dict[str, Any]:
    value: dict[str, Any] = {}
    note_text = observation.value_text
    if observation.value is not None:
        value["valueQuantity"] = _quantity(observation.value, observation.unit)
    elif observation.value_text and not observation.components:
        value["valueString"], note_text = observation.value_text, ""
    reference_range = _drop_empty(
        {
            "low": _quantity(observation.reference_low, observation.unit)
            if observation.reference_low is not None
            else None,
            "high": _quantity(observation.reference_high, observation.unit)
            if observation.reference_high is not None
            else None,
        }
    )
    is_patient_reported = observation.source == Observation.Source.PATIENT
    return _drop_empty(
        {
            "resourceType": "Observation",
            "id": str(observation.pk),
            # Where the value came from travels as a tag; a diary entry also names the
            # patient as its performer, which is how FHIR says "patient-reported".
            "meta": {
                "tag": [
                    {
                        "system": codes.OBSERVATION_SOURCE_SYSTEM,
                        "code": observation.source,
                        "display": str(observation.get_source_display()),
                    }
                ]
            },  # fmt: skip
            "identifier": [identifier_of(observation, "observation")],
            "status": "final",
            "category": [_coded(codes.OBSERVATION_CATEGORY, observation.category)],
            "code": _observation_code(observation.code, observation.display),
            "subject": links.reference("Patient", str(observation.patient_id)),
            "encounter": _encounter_reference(observation, links),
            "effectiveDateTime": _instant(observation.effective_at),
            "issued": _instant(observation.recorded_at),
            "performer": [links.reference("Patient", str(observation.patient_id))]
            if is_patient_reported
            else [],
            **value,
            "interpretation": [_coded(codes.INTERPRETATION, observation.interpretation)]
            if observation.interpretation
            else [],
            "note": [{"text": note_text}] if note_text else [],
            "referenceRange": [reference_range] if reference_range else [],
            "component": [
                {
                    "code": _observation_code(part.get("code", ""), part.get("display", "")),
                    "valueQuantity": _quantity(part["value"], part.get("unit", "")),
                }
                for part in observation.components
            ],
        }
    )


def _document_type(kind: str, label: str) -> dict[str, Any]:
    loinc_code, loinc_display = codes.DOCUMENT_LOINC[kind]
    return {
        "coding": [
            {"system": codes.DOCUMENT_KIND_SYSTEM, "code": kind},
            {"system": codes.LOINC, "code": loinc_code, "display": loinc_display},
        ],
        "text": label,
    }


def document_resource(document: Document, links: Links) -> dict[str, Any]:
    # The file travels inline: $everything is a copy of the record that must stand alone.
    with document.file.open("rb") as stream:
        data = stream.read()
    return _drop_empty(
        {
            "resourceType": "DocumentReference",
            "id": str(document.pk),
            "identifier": [identifier_of(document, "document")],
            "status": "current",
            "type": _document_type(document.kind, str(document.get_kind_display())),
            "subject": links.reference("Patient", str(document.patient_id)),
            "date": _instant(document.recorded_at),
            "description": document.title,
            "content": [
                {
                    "attachment": {
                        "contentType": document.content_type,
                        "data": base64.b64encode(data).decode("ascii"),
                        "size": len(data),
                        "title": document.file.name.rsplit("/", 1)[-1],
                    }
                }
            ],
        }
    )


def note_resource(note: ClinicalNote, links: Links) -> dict[str, Any]:
    """A clinical note as a DocumentReference of type "clinical note", its text inline."""
    return _drop_empty(
        {
            "resourceType": "DocumentReference",
            # Notes and documents share the resource type; the prefix keeps their ids apart.
            "id": f"note-{note.pk}",
            "identifier": [identifier_of(note, "clinicalnote")],
            "status": "current",
            "type": _document_type(codes.CLINICAL_NOTE_KIND, "Clinical note"),
            "subject": links.reference("Patient", str(note.patient_id)),
            "date": _instant(note.recorded_at),
            "description": note.title,
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(note.text.encode()).decode("ascii"),
                    }
                }
            ],
            "context": {"encounter": [_encounter_reference(note, links)]}
            if _encounter_reference(note, links)
            else None,
        }
    )


def bundle(
    *,
    bundle_type: str,
    resources: list[dict[str, Any]],
    links: Links,
    total: int | None = None,
    self_url: str = "",
) -> dict[str, Any]:
    """A validated Bundle of `resources`; a searchset marks each entry as a match."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {
            "fullUrl": links.full_url(resource["resourceType"], resource["id"]),
            "resource": resource,
        }
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match"}
        entries.append(entry)
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": bundle_type,
        "timestamp": dt.datetime.now(tz=dt.UTC).isoformat(),
        "total": total,
        "link": [{"relation": "self", "url": self_url}] if self_url else None,
        "entry": entries or None,
    }
    return Bundle.model_validate(_drop_empty(result)).model_dump(mode="json")


def everything_resources(patient: Patient, links: Links) -> list[dict[str, Any]]:
    """The whole record of `patient` as resources, the Patient first, encounters next."""
    resources = [patient_resource(patient)]
    resources += [
        encounter_resource(encounter, links)
        for encounter in patient.encounter_set.select_related("organization").order_by("pk")
    ]
    resources += [condition_resource(row, links) for row in patient.condition_set.order_by("pk")]
    resources += [
        observation_resource(row, links) for row in patient.observation_set.order_by("pk")
    ]
    resources += [medication_resource(row, links) for row in patient.medication_set.order_by("pk")]
    resources += [allergy_resource(row, links) for row in patient.allergy_set.order_by("pk")]
    resources += [document_resource(row, links) for row in patient.document_set.order_by("pk")]
    resources += [note_resource(row, links) for row in patient.clinicalnote_set.order_by("pk")]
    return resources


SUMMARY_OBSERVATION_CATEGORIES = (
    Observation.Category.VITAL_SIGNS,
    Observation.Category.LABORATORY,
)


def summary_bundle(patient: Patient, *, as_of: dt.datetime) -> dict[str, Any]:
    """The patient summary as a FHIR "collection" Bundle (a JSON-ready, validated dict).

    The Patient, active Conditions, MedicationStatements and AllergyIntolerances recorded up
    to `as_of`, and the latest Observation of each code (vital signs, laboratory) up to
    `as_of`. No access check and no audit: the caller does both.
    """
    links = Links(with_encounters=False)
    active_conditions = patient.condition_set.filter(
        clinical_status__in=[Condition.ClinicalStatus.ACTIVE, Condition.ClinicalStatus.RECURRENCE],
        recorded_at__lte=as_of,
    ).order_by("pk")
    medications = patient.medication_set.filter(
        status=Medication.Status.ACTIVE, recorded_at__lte=as_of
    ).order_by("pk")
    allergies = patient.allergy_set.filter(
        status=Allergy.Status.ACTIVE, recorded_at__lte=as_of
    ).order_by("pk")
    observations = [
        observation
        for observation in latest_observation_per_code(patient, as_of=as_of)
        if observation.category in SUMMARY_OBSERVATION_CATEGORIES
    ]
    resources = [patient_resource(patient)]
    resources += [condition_resource(row, links) for row in active_conditions]
    resources += [medication_resource(row, links) for row in medications]
    resources += [allergy_resource(row, links) for row in allergies]
    resources += [observation_resource(row, links) for row in observations]
    return bundle(bundle_type="collection", resources=resources, links=links)
