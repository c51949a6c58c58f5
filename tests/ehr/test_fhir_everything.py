from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from accounts.models import AuditEvent, User
from ehr.fhir.mapping import summary_bundle
from ehr.fhir.resources import model_for
from ehr.models import Observation, Patient
from tests.ehr.test_fhir_helpers import (
    PDF,
    FhirClient,
    build_full_record,
    content_without_ids,
    everything_as_transaction,
)


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


def test_everything_exports_every_kind_of_record_entry_as_valid_fhir(
    clinician: User, patient: Patient
) -> None:
    build_full_record(patient, clinician)

    response = FhirClient(clinician).get(f"Patient/{patient.pk}/$everything")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    bundle = response.json()
    Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        model_for(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    counts = {}
    for entry in bundle["entry"]:
        counts[entry["resource"]["resourceType"]] = (
            counts.get(entry["resource"]["resourceType"], 0) + 1
        )
    assert counts == {
        "Patient": 1,
        "Encounter": 1,
        "Condition": 1,
        "Observation": 3,
        "MedicationStatement": 1,
        "AllergyIntolerance": 1,
        "DocumentReference": 2,
    }


def test_blood_pressure_exports_as_panel_with_systolic_and_diastolic_components(
    clinician: User, patient: Patient
) -> None:
    build_full_record(patient, clinician)

    bundle = FhirClient(clinician).get(f"Patient/{patient.pk}/$everything").json()

    pressure = next(o for o in _resources(bundle, "Observation") if o.get("component"))
    assert pressure["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "85354-9",
        "display": "Blood pressure",
    }
    assert [
        (c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in pressure["component"]
    ] == [
        ("8480-6", 150),
        ("8462-4", 95),
    ]
    assert "valueQuantity" not in pressure


def test_diary_readings_are_marked_patient_reported(clinician: User, patient: Patient) -> None:
    build_full_record(patient, clinician)

    bundle = FhirClient(clinician).get(f"Patient/{patient.pk}/$everything").json()

    by_code = {o["code"]["coding"][0]["code"]: o for o in _resources(bundle, "Observation")}
    diary = by_code["8867-4"]
    assert diary["performer"] == [{"reference": f"Patient/{patient.pk}"}]
    assert diary["meta"]["tag"][0]["code"] == "patient"
    assert "performer" not in by_code["2345-7"]


def test_documents_and_clinical_notes_travel_inline(clinician: User, patient: Patient) -> None:
    build_full_record(patient, clinician)

    bundle = FhirClient(clinician).get(f"Patient/{patient.pk}/$everything").json()

    documents = {d["description"]: d for d in _resources(bundle, "DocumentReference")}
    letter = documents["Discharge letter"]["content"][0]["attachment"]
    assert base64.b64decode(letter["data"]) == PDF
    assert letter["contentType"] == "application/pdf"
    note = documents["Visit"]
    assert note["type"]["coding"][1]["code"] == "34109-9"
    text = base64.b64decode(note["content"][0]["attachment"]["data"]).decode()
    assert text == "Давление высокое, назначен амлодипин."


def test_everything_is_one_export_event_in_the_audit_log(clinician: User, patient: Patient) -> None:
    build_full_record(patient, clinician)

    FhirClient(clinician).get(f"Patient/{patient.pk}/$everything")

    events = AuditEvent.objects.filter(actor_user_id=clinician.pk, patient_id=patient.pk)
    assert [(e.action, e.outcome, e.region) for e in events] == [
        (AuditEvent.Action.EXPORT, AuditEvent.Outcome.ALLOWED, "naryn")
    ]


def test_export_then_import_into_an_empty_record_gives_back_the_same_record(
    clinician: User, patient: Patient
) -> None:
    build_full_record(patient, clinician)
    api = FhirClient(clinician)
    exported = api.get(f"Patient/{patient.pk}/$everything").json()
    Patient.objects.filter(pk=patient.pk).delete()

    response = api.post(everything_as_transaction(exported))

    assert response.status_code == 200, response.content
    statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
    assert statuses == ["201 Created"] * len(exported["entry"])
    imported = Patient.objects.get(pin=patient.pin)
    assert imported.pk != patient.pk
    again = api.get(f"Patient/{imported.pk}/$everything").json()
    assert content_without_ids(again) == content_without_ids(exported)


def test_importing_our_own_export_into_the_same_record_changes_nothing(
    clinician: User, patient: Patient
) -> None:
    build_full_record(patient, clinician)
    api = FhirClient(clinician)
    exported = api.get(f"Patient/{patient.pk}/$everything").json()
    rows = Observation.objects.count()

    response = api.post(everything_as_transaction(exported))

    assert response.status_code == 200, response.content
    assert {entry["response"]["status"] for entry in response.json()["entry"]} == {"200 OK"}
    assert Observation.objects.count() == rows


def test_summary_bundle_has_active_problems_and_latest_value_of_each_code(
    clinician: User, patient: Patient
) -> None:
    build_full_record(patient, clinician)
    old = Observation.objects.get(code="2345-7")
    Observation.objects.create(
        patient=patient,
        category=Observation.Category.LABORATORY,
        source=Observation.Source.LAB,
        code="2345-7",
        display="Glucose",
        value=5,
        unit="mmol/L",
        effective_at=old.effective_at - dt.timedelta(days=30),
    )
    Observation.objects.create(
        patient=patient,
        category=Observation.Category.LABORATORY,
        source=Observation.Source.LAB,
        code="2345-7",
        display="Glucose",
        value=9,
        unit="mmol/L",
        effective_at=timezone.now() + dt.timedelta(days=1),
    )

    bundle = summary_bundle(patient, as_of=timezone.now())

    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    types = sorted(entry["resource"]["resourceType"] for entry in bundle["entry"])
    assert types == [
        "AllergyIntolerance",
        "Condition",
        "MedicationStatement",
        "Observation",
        "Observation",
        "Observation",
        "Patient",
    ]
    glucose = [
        o for o in _resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "2345-7"
    ]
    assert [o["valueQuantity"]["value"] for o in glucose] == [6.1]
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    for condition in _resources(bundle, "Condition"):
        assert condition["subject"]["reference"] in full_urls
        assert "encounter" not in condition
