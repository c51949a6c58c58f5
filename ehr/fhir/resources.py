"""The FHIR resource types this server speaks, and their fhir.resources (R4B) models."""

from __future__ import annotations

from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

# R4B keeps R4's shape for every one of these, so R4 (4.0.1) clients read them unchanged.
MODELS: dict[str, type[FHIRResourceModel]] = {
    model.get_resource_type(): model
    for model in (
        Patient,
        Encounter,
        Condition,
        Observation,
        MedicationStatement,
        AllergyIntolerance,
        DocumentReference,
        Bundle,
        CapabilityStatement,
        OperationOutcome,
    )
}

# What a transaction may write, in the order it is written: the patient, then the
# encounters that other entries point at.
IMPORTABLE = [
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationStatement",
    "AllergyIntolerance",
    "DocumentReference",
]


class UnknownResourceType(LookupError):
    pass


def model_for(resource_type: str) -> type[FHIRResourceModel]:
    try:
        return MODELS[resource_type]
    except KeyError:
        raise UnknownResourceType(resource_type) from None
