"""FHIR resources (validated JSON dicts) read back into the columns of our models.

The reverse of `mapping`: what `mapping` writes, this reads exactly (the round trip), and it
takes the common shapes other systems send. What our record cannot hold is refused with
`FhirError(422)` naming the element, never guessed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Organization, Region
from ehr.fhir import codes
from ehr.fhir.responses import FhirError
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

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


@dataclass
class ParsedEntry:
    """One resource as the row it becomes, with what it points at."""

    model: type
    fields: dict[str, Any]
    identifier: tuple[str, str] | None = None
    patient_reference: str = ""
    encounter_reference: str = ""
    file_data: bytes | None = None
    file_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def unprocessable(resource_type: str, message: str) -> FhirError:
    return FhirError(422, "processing", f"{resource_type}: {message}")


def _first(items: list[Any] | None) -> Any:
    return items[0] if items else {}


def _code_in(concept: dict[str, Any] | None, *systems: str) -> str:
    for coding in (concept or {}).get("coding", []):
        if coding.get("system") in systems and coding.get("code"):
            return coding["code"]
    return ""


def _concept_text(concept: dict[str, Any] | None) -> str:
    concept = concept or {}
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding", []):
        if coding.get("system") != codes.DATA_ABSENT and (
            coding.get("display") or coding.get("code")
        ):
            return coding.get("display") or coding["code"]
    return ""


def _notes(resource: dict[str, Any]) -> str:
    return "\n\n".join(note["text"] for note in resource.get("note", []) if note.get("text"))


def _reference(value: dict[str, Any] | None) -> str:
    return (value or {}).get("reference", "")


def parse_moment(value: str | None) -> dt.datetime | None:
    """A FHIR dateTime/instant as an aware datetime; a bare date is midnight here."""
    if not value:
        return None
    moment = parse_datetime(value) if "T" in value else None
    if moment is None:
        # "2024", "2024-05" and "2024-05-17" are all valid dateTimes: the first day they name.
        parts = [int(part) for part in value.split("-")] + [1, 1]
        moment = dt.datetime(parts[0], parts[1], parts[2])  # noqa: DTZ001 (made aware below)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _parse_date(value: str | None) -> dt.date | None:
    if not value:
        return None
    moment = parse_moment(value)
    return timezone.localtime(moment).date() if "T" in value else moment.date()


def _recorded(value: str | None) -> dict[str, dt.datetime]:
    # Without a time of its own the row keeps the one it has (a new row: now), so that the
    # same resource posted again changes nothing.
    moment = parse_moment(value)
    return {"recorded_at": moment} if moment else {}


def _identifier(resource: dict[str, Any]) -> tuple[str, str] | None:
    for identifier in resource.get("identifier", []):
        if identifier.get("value"):
            return identifier.get("system", ""), identifier["value"]
    return None


def _split_name(name: dict[str, Any]) -> tuple[str, list[str]]:
    family, given = name.get("family", ""), list(name.get("given", []))
    if not family and name.get("text"):
        family, *given = name["text"].split()
    return family, given


def _is_latin_name(name: dict[str, Any]) -> bool:
    marked = any(
        ext.get("url") == codes.NAME_REPRESENTATION and ext.get("valueCode") == "ABC"
        for ext in name.get("extension", [])
    )
    spelled = " ".join([name.get("family", ""), *name.get("given", []), name.get("text", "")])
    return marked or not _CYRILLIC.search(spelled)


def parse_patient(resource: dict[str, Any]) -> ParsedEntry:
    names = [name for name in resource.get("name", []) if name.get("use") != "old"]
    native = next((name for name in names if not _is_latin_name(name)), None)
    latin = next((name for name in names if _is_latin_name(name)), None)
    primary = native or latin
    if primary is None:
        raise unprocessable("Patient", "a name (family and given) is required")
    family, given = _split_name(primary)
    if not family or not given:
        raise unprocessable("Patient", "the name needs a family name and a given name")
    if not resource.get("birthDate"):
        raise unprocessable("Patient", "birthDate is required")
    fields: dict[str, Any] = {
        "family_name": family,
        "given_name": given[0],
        "patronymic": " ".join(given[1:]),
        "birth_date": _parse_date(resource["birthDate"]),
        "sex": resource.get("gender") or Patient.Sex.UNKNOWN,
        "phone": next(
            (t["value"] for t in resource.get("telecom", []) if t.get("system") == "phone"), ""
        ),
    }
    if latin is not None:
        latin_family, latin_given = _split_name(latin)
        fields["family_name_latin"] = latin_family
        fields["given_name_latin"] = latin_given[0] if latin_given else ""
    address = _first(resource.get("address"))
    fields["address"] = address.get("text") or ", ".join(
        part for part in [*address.get("line", []), address.get("city", "")] if part
    )
    if address.get("state") in Region.values:
        fields["region"] = address["state"]
    pin = next(
        (
            identifier["value"]
            for identifier in resource.get("identifier", [])
            if identifier.get("system") == codes.PIN_SYSTEM and identifier.get("value")
        ),
        None,
    )
    if pin:
        fields["pin"] = pin
    return ParsedEntry(
        model=Patient, fields=fields, identifier=(codes.PIN_SYSTEM, pin) if pin else None
    )


_ENCOUNTER_STATUS = {
    "planned": Encounter.Status.PLANNED,
    "arrived": Encounter.Status.PLANNED,
    "triaged": Encounter.Status.PLANNED,
    "in-progress": Encounter.Status.IN_PROGRESS,
    "onleave": Encounter.Status.IN_PROGRESS,
    "finished": Encounter.Status.FINISHED,
    "cancelled": Encounter.Status.CANCELLED,
    "entered-in-error": Encounter.Status.CANCELLED,
}


def parse_encounter(resource: dict[str, Any]) -> ParsedEntry:
    kind = ""
    for concept in resource.get("type", []):
        kind = kind or _code_in(concept, codes.ENCOUNTER_KIND_SYSTEM)
    if kind not in Encounter.Kind.values:
        class_code = resource.get("class", {}).get("code", "")
        kind = codes.ENCOUNTER_KIND_BY_CLASS.get(class_code, Encounter.Kind.OUTPATIENT)
    status = _ENCOUNTER_STATUS.get(resource.get("status", ""))
    if status is None:
        raise unprocessable("Encounter", f"status {resource.get('status')!r} is not supported")
    period = resource.get("period", {})
    if not period.get("start"):
        raise unprocessable("Encounter", "period.start is required")
    provider = resource.get("serviceProvider", {})
    organization = None
    if provider.get("identifier", {}).get("system") == codes.ORGANIZATION_SYSTEM:
        # Only our own organization ids, checked by name too: another server's id means nothing.
        organization = Organization.objects.filter(
            pk=int(provider["identifier"]["value"])
            if provider["identifier"].get("value", "").isdigit()
            else 0,
            name=provider.get("display", ""),
        ).first()
    fields = {
        "kind": kind,
        "status": status,
        "started_at": parse_moment(period["start"]),
        "ended_at": parse_moment(period.get("end")),
        "reason": _concept_text(_first(resource.get("reasonCode"))),
        "organization": organization,
    }
    return ParsedEntry(
        model=Encounter,
        fields=fields,
        identifier=_identifier(resource),
        patient_reference=_reference(resource.get("subject")),
    )


_CONDITION_STATUS = {
    "active": Condition.ClinicalStatus.ACTIVE,
    "recurrence": Condition.ClinicalStatus.RECURRENCE,
    "relapse": Condition.ClinicalStatus.RECURRENCE,
    "inactive": Condition.ClinicalStatus.REMISSION,
    "remission": Condition.ClinicalStatus.REMISSION,
    "resolved": Condition.ClinicalStatus.RESOLVED,
}


def parse_condition(resource: dict[str, Any]) -> ParsedEntry:
    code = resource.get("code", {})
    icd10 = next(
        (
            coding["code"]
            for coding in code.get("coding", [])
            if coding.get("system", "").startswith(codes.ICD10) and coding.get("code")
        ),
        "",
    )
    if not icd10:
        raise unprocessable("Condition", f"code needs an ICD-10 coding (system {codes.ICD10})")
    status = _code_in(resource.get("clinicalStatus"), codes.CONDITION_CLINICAL) or "active"
    fields = {
        "icd10_code": icd10,
        "description": _concept_text(code) or icd10,
        "clinical_status": _CONDITION_STATUS.get(status, Condition.ClinicalStatus.ACTIVE),
        "onset_date": _parse_date(resource.get("onsetDateTime")),
        "note": _notes(resource),
        **_recorded(resource.get("recordedDate")),
    }
    return ParsedEntry(
        model=Condition,
        fields=fields,
        identifier=_identifier(resource),
        patient_reference=_reference(resource.get("subject")),
        encounter_reference=_reference(resource.get("encounter")),
    )


_MEDICATION_STATUS = {
    "active": Medication.Status.ACTIVE,
    "intended": Medication.Status.ACTIVE,
    "on-hold": Medication.Status.ACTIVE,
    "unknown": Medication.Status.ACTIVE,
    "completed": Medication.Status.COMPLETED,
    "stopped": Medication.Status.STOPPED,
    "not-taken": Medication.Status.STOPPED,
    "entered-in-error": Medication.Status.STOPPED,
}


def parse_medication(resource: dict[str, Any]) -> ParsedEntry:
    name = _concept_text(resource.get("medicationCodeableConcept"))
    if not name:
        raise unprocessable(
            "MedicationStatement", "medicationCodeableConcept with a text or display is required"
        )
    dosage = _first(resource.get("dosage"))
    period = resource.get("effectivePeriod", {})
    fields = {
        "name": name,
        "status": _MEDICATION_STATUS.get(resource.get("status", ""), Medication.Status.ACTIVE),
        "dose": dosage.get("text", ""),
        "route": _concept_text(dosage.get("route")),
        "frequency": _concept_text(dosage.get("timing", {}).get("code")),
        "start_date": _parse_date(period.get("start") or resource.get("effectiveDateTime")),
        "end_date": _parse_date(period.get("end")),
        "note": _notes(resource),
        **_recorded(resource.get("dateAsserted")),
    }
    return ParsedEntry(
        model=Medication,
        fields=fields,
        identifier=_identifier(resource),
        patient_reference=_reference(resource.get("subject")),
    )


def parse_allergy(resource: dict[str, Any]) -> ParsedEntry:
    substance = _concept_text(resource.get("code"))
    if not substance:
        raise unprocessable("AllergyIntolerance", "code (the substance) is required")
    reaction = _first(resource.get("reaction"))
    status = _code_in(resource.get("clinicalStatus"), codes.ALLERGY_CLINICAL) or "active"
    fields = {
        "substance": substance,
        "reaction": _concept_text(_first(reaction.get("manifestation"))),
        "severity": reaction.get("severity", ""),
        "status": status if status in Allergy.Status.values else Allergy.Status.ACTIVE,
        **_recorded(resource.get("recordedDate")),
    }
    return ParsedEntry(
        model=Allergy,
        fields=fields,
        identifier=_identifier(resource),
        patient_reference=_reference(resource.get("patient")),
    )


def _json_number(value: Any) -> int | float:
    # Components live in a JSONField: whole numbers stay ints, as the diary writes them.
    number = Decimal(str(value))
    return int(number) if number == number.to_integral() else float(number)


def _decimal(value: Any) -> Decimal | None:
    # JSON numbers arrive as floats; through str() 36.6 stays 36.6, not 36.600000000000001.
    return Decimal(str(value)) if value is not None else None


def _observation_source(resource: dict[str, Any]) -> str:
    for tag in resource.get("meta", {}).get("tag", []):
        is_ours = tag.get("system") == codes.OBSERVATION_SOURCE_SYSTEM
        if is_ours and tag.get("code") in Observation.Source.values:
            return tag["code"]
    subject = _reference(resource.get("subject"))
    performers = [_reference(performer) for performer in resource.get("performer", [])]
    if subject and subject in performers:
        return Observation.Source.PATIENT
    return Observation.Source.IMPORT


def parse_observation(resource: dict[str, Any]) -> ParsedEntry:
    concept = resource.get("code", {})
    category = ""
    for candidate in resource.get("category", []):
        code = _code_in(candidate, codes.OBSERVATION_CATEGORY)
        if code in Observation.Category.values:
            category = category or code
    quantity = resource.get("valueQuantity", {})
    value_text = resource.get("valueString") or _concept_text(resource.get("valueCodeableConcept"))
    components = [
        {
            "code": _code_in(part.get("code"), codes.LOINC),
            "display": _concept_text(part.get("code")),
            "value": _json_number(part["valueQuantity"]["value"]),
            "unit": part["valueQuantity"].get("unit") or part["valueQuantity"].get("code", ""),
        }
        for part in resource.get("component", [])
        if part.get("valueQuantity", {}).get("value") is not None
    ]
    value = quantity.get("value")
    if value is None and resource.get("valueInteger") is not None:
        value = resource["valueInteger"]
    if value is None and not value_text and not components:
        raise unprocessable("Observation", "a valueQuantity, valueString or component is needed")
    effective = (
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or resource.get("effectivePeriod", {}).get("start")
        or resource.get("issued")
    )
    if not effective:
        raise unprocessable("Observation", "effectiveDateTime is required")
    unit = quantity.get("unit") or quantity.get("code", "")
    reference_range = _first(resource.get("referenceRange"))
    interpretation = _code_in(_first(resource.get("interpretation")), codes.INTERPRETATION)
    fields = {
        "category": category or Observation.Category.LABORATORY,
        "source": _observation_source(resource),
        "code": _code_in(concept, codes.LOINC),
        "display": _concept_text(concept),
        "value": _decimal(value),
        "unit": unit or (components[0]["unit"] if components else ""),
        "value_text": value_text or _notes(resource),
        "components": components,
        "reference_low": _decimal(reference_range.get("low", {}).get("value")),
        "reference_high": _decimal(reference_range.get("high", {}).get("value")),
        "interpretation": interpretation
        if interpretation in Observation.Interpretation.values
        else "",
        "effective_at": parse_moment(effective),
        **_recorded(resource.get("issued")),
    }
    return ParsedEntry(
        model=Observation,
        fields=fields,
        identifier=_identifier(resource),
        patient_reference=_reference(resource.get("subject")),
        encounter_reference=_reference(resource.get("encounter")),
    )


def _attachment_bytes(attachment: dict[str, Any]) -> bytes:
    if not attachment.get("data"):
        # Fetching attachment.url from elsewhere would let an import reach any address.
        raise unprocessable("DocumentReference", "content.attachment.data (inline) is required")
    try:
        return base64.b64decode(attachment["data"], validate=True)
    except (binascii.Error, ValueError):
        raise unprocessable("DocumentReference", "attachment.data is not base64") from None


def parse_document_reference(resource: dict[str, Any]) -> ParsedEntry:
    kind = _code_in(resource.get("type"), codes.DOCUMENT_KIND_SYSTEM)
    if not kind:
        loinc = _code_in(resource.get("type"), codes.LOINC)
        kind = next((k for k, (code, _d) in codes.DOCUMENT_LOINC.items() if code == loinc), "")
    attachment = _first(resource.get("content")).get("attachment", {})
    data = _attachment_bytes(attachment)
    encounter = _reference(_first(resource.get("context", {}).get("encounter")))
    recorded = _recorded(resource.get("date"))
    common = {
        "identifier": _identifier(resource),
        "patient_reference": _reference(resource.get("subject")),
    }
    if kind == codes.CLINICAL_NOTE_KIND:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise unprocessable("DocumentReference", "a clinical note must be UTF-8 text") from None
        fields = {
            "title": resource.get("description", ""),
            "text": text,
            **recorded,
        }
        return ParsedEntry(
            model=ClinicalNote, fields=fields, encounter_reference=encounter, **common
        )
    title = resource.get("description") or attachment.get("title") or "document"
    fields = {
        "title": title,
        "kind": kind if kind in Document.Kind.values else Document.Kind.OTHER,
        **recorded,
    }
    return ParsedEntry(
        model=Document,
        fields=fields,
        file_data=data,
        file_name=attachment.get("title") or "document",
        **common,
    )


PARSERS = {
    "Patient": parse_patient,
    "Encounter": parse_encounter,
    "Condition": parse_condition,
    "Observation": parse_observation,
    "MedicationStatement": parse_medication,
    "AllergyIntolerance": parse_allergy,
    "DocumentReference": parse_document_reference,
}
