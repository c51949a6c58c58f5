"""Code systems and identifier systems shared by the export (mapping) and the import (parsing)."""

from __future__ import annotations

from django.conf import settings

from ehr.models import Document, Encounter

PIN_SYSTEM = "urn:telemed:pin"
ORGANIZATION_SYSTEM = "urn:telemed:organization"
OBSERVATION_SOURCE_SYSTEM = "urn:telemed:observation-source"
ENCOUNTER_KIND_SYSTEM = "urn:telemed:encounter-kind"
DOCUMENT_KIND_SYSTEM = "urn:telemed:document-kind"
CLINICAL_NOTE_KIND = "clinical-note"

LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# ISO 21090 name representation: "ABC" marks the alphabetic (Latin) spelling of a name.
NAME_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"

# FHIR R4 requires Encounter.class (v3 ActCode); our own kind travels in Encounter.type.
ENCOUNTER_CLASS = {
    Encounter.Kind.OUTPATIENT: ("AMB", "ambulatory"),
    Encounter.Kind.HOME: ("HH", "home health"),
    Encounter.Kind.TELECONSULTATION: ("VR", "virtual"),
    Encounter.Kind.INPATIENT: ("IMP", "inpatient encounter"),
    Encounter.Kind.EMERGENCY: ("EMER", "emergency"),
}
ENCOUNTER_KIND_BY_CLASS = {code: kind for kind, (code, _display) in ENCOUNTER_CLASS.items()}

# LOINC document types, so that other systems understand the kind without our code system.
DOCUMENT_LOINC = {
    Document.Kind.REPORT: ("11488-4", "Consult note"),
    Document.Kind.REFERRAL: ("57133-1", "Referral note"),
    Document.Kind.DISCHARGE: ("18842-5", "Discharge summary"),
    Document.Kind.LAB: ("11502-2", "Laboratory report"),
    Document.Kind.IMAGE: ("72170-4", "Photographic image"),
    CLINICAL_NOTE_KIND: ("34109-9", "Note"),
}


def local_identifier_system(kind: str) -> str:
    """The identifier system of rows born here (no source of their own).

    It names this installation (SITE_URL), so that a row id of another Telemed never passes
    for one of ours when its export is imported here.
    """
    return f"{settings.SITE_URL}/fhir/identifier/{kind}"
