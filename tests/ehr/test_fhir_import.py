from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from accounts.models import AuditEvent, Membership, Organization, User
from ehr.models import Condition, Observation, Patient
from tests.conftest import logged_in_client
from tests.ehr.test_fhir_helpers import FhirClient
from tests.factories.accounts import MembershipFactory

NEW_PIN = "11203198500456"


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _new_patient_entry(pin: str = NEW_PIN, family: str = "Токтогулова") -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:4f1c2d1e-0000-4000-8000-000000000001",
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:telemed:pin", "value": pin}],
            "name": [{"family": family, "given": ["Айгерим"]}],
            "gender": "female",
            "birthDate": "1985-03-12",
        },
        "request": {"method": "POST", "url": "Patient"},
    }


def _glucose_entry(subject: str, value: float = 5.4, lab_id: str = "LAB-1") -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:4f1c2d1e-0000-4000-8000-000000000002",
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:lab:naryn", "value": lab_id}],
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "2345-7"}],
                "text": "Glucose",
            },
            "subject": {"reference": subject},
            "effectiveDateTime": "2024-06-01T08:00:00+06:00",
            "valueQuantity": {"value": value, "unit": "mmol/L"},
        },
        "request": {"method": "POST", "url": "Observation"},
    }


def _condition_entry(subject: str) -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:4f1c2d1e-0000-4000-8000-000000000003",
        "resource": {
            "resourceType": "Condition",
            "identifier": [{"system": "urn:clinic:x", "value": "C-1"}],
            "code": {
                "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11"}],
                "text": "Type 2 diabetes",
            },
            "subject": {"reference": subject},
        },
        "request": {"method": "POST", "url": "Condition"},
    }


def _counts() -> tuple[int, int, int, int]:
    return (
        Patient.objects.count(),
        Observation.objects.count(),
        Condition.objects.count(),
        AuditEvent.objects.filter(action__in=["create", "update"]).count(),
    )


def test_imported_patient_joins_the_clinicians_organization_with_entries_linked_by_fullurl(
    clinician: User, clinic: Organization
) -> None:
    bundle = _transaction(
        _new_patient_entry(), _glucose_entry("urn:uuid:4f1c2d1e-0000-4000-8000-000000000001")
    )

    response = FhirClient(clinician).post(bundle)

    assert response.status_code == 200, response.content
    result = response.json()
    assert result["type"] == "transaction-response"
    assert [e["response"]["status"] for e in result["entry"]] == ["201 Created", "201 Created"]
    patient = Patient.objects.get(pin=NEW_PIN)
    assert patient.organization == clinic
    assert patient.family_name_latin == "Toktogulova"
    assert patient.observation_set.get().source_id == "LAB-1"
    assert result["entry"][0]["response"]["location"] == f"Patient/{patient.pk}"
    actions = set(AuditEvent.objects.filter(patient_id=patient.pk).values_list("action", flat=True))
    assert actions == {AuditEvent.Action.CREATE}


def test_same_transaction_posted_twice_changes_nothing_the_second_time(
    clinician: User, patient: Patient
) -> None:
    bundle = _transaction(
        _new_patient_entry(),
        _glucose_entry("urn:uuid:4f1c2d1e-0000-4000-8000-000000000001"),
        _condition_entry(f"Patient/{patient.pk}"),
    )
    api = FhirClient(clinician)
    api.post(bundle)
    before = _counts()

    response = api.post(bundle)

    assert response.status_code == 200
    assert {e["response"]["status"] for e in response.json()["entry"]} == {"200 OK"}
    assert _counts() == before


def test_changed_value_under_the_same_identifier_updates_the_row(
    clinician: User, patient: Patient
) -> None:
    api = FhirClient(clinician)
    api.post(_transaction(_glucose_entry(f"Patient/{patient.pk}", value=5.4)))

    response = api.post(_transaction(_glucose_entry(f"Patient/{patient.pk}", value=7.2)))

    assert response.json()["entry"][0]["response"]["status"] == "200 OK"
    assert str(patient.observation_set.get().value.normalize()) == "7.2"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.UPDATE).count() == 1


def test_if_none_exist_leaves_the_existing_patient_and_entry_untouched(
    clinician: User, patient: Patient
) -> None:
    api = FhirClient(clinician)
    api.post(_transaction(_glucose_entry(f"Patient/{patient.pk}", lab_id="LAB-1")))
    patient_entry = _new_patient_entry(pin=patient.pin, family="Другая")
    patient_entry["request"]["ifNoneExist"] = f"identifier=urn:telemed:pin|{patient.pin}"
    # Another identifier, but the lab says: only if LAB-1 is not there yet.
    observation = _glucose_entry("urn:uuid:4f1c2d1e-0000-4000-8000-000000000001", lab_id="LAB-2")
    observation["request"]["ifNoneExist"] = "identifier=urn:lab:naryn|LAB-1"

    response = api.post(_transaction(patient_entry, observation))

    assert response.status_code == 200, response.content
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["200 OK", "200 OK"]
    patient.refresh_from_db()
    assert patient.family_name == "Mamytova"
    assert patient.observation_set.count() == 1


def test_clinician_of_several_clinics_names_the_clinic_for_new_patients(
    clinician: User, clinic: Organization, other_clinic: Organization
) -> None:
    MembershipFactory(user=clinician, organization=other_clinic, role=Membership.Role.CLINICIAN)
    api = FhirClient(clinician)

    refused = api.post(_transaction(_new_patient_entry()))
    accepted = api.post(
        _transaction(_new_patient_entry()), HTTP_X_TELEMED_ORGANIZATION=str(other_clinic.pk)
    )

    assert refused.status_code == 400
    assert "X-Telemed-Organization" in refused.json()["issue"][0]["diagnostics"]
    assert accepted.status_code == 200
    assert Patient.objects.get(pin=NEW_PIN).organization == other_clinic


def test_clinician_cannot_write_into_another_clinics_patient(
    other_clinician: User, patient: Patient
) -> None:
    api = FhirClient(other_clinician)
    before = _counts()

    by_reference = api.post(_transaction(_glucose_entry(f"Patient/{patient.pk}")))
    by_pin = api.post(_transaction(_new_patient_entry(pin=patient.pin, family="Чужая")))

    assert by_reference.status_code == 404
    assert by_pin.status_code == 404
    OperationOutcome.model_validate(by_reference.json())
    assert _counts() == before


def test_coordinator_who_reads_a_patient_may_not_write_to_them(
    coordinator: User, patient: Patient
) -> None:
    response = FhirClient(coordinator).post(_transaction(_glucose_entry(f"Patient/{patient.pk}")))

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert not patient.observation_set.exists()


def test_post_without_token_answers_401_even_with_a_session(clinician: User) -> None:
    session = logged_in_client(clinician)

    response = session.post(
        "/fhir/",
        json.dumps(_transaction(_new_patient_entry())),
        content_type="application/fhir+json",
    )

    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"
    assert not Patient.objects.filter(pin=NEW_PIN).exists()


def test_malformed_json_answers_400_with_the_reason(clinician: User) -> None:
    response = FhirClient(clinician).post(None, raw=b'{"resourceType": "Bundle", ')

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["issue"][0]["diagnostics"]


def test_invalid_resource_answers_400_naming_the_element_and_writes_nothing(
    clinician: User, patient: Patient
) -> None:
    observation = _glucose_entry(f"Patient/{patient.pk}")
    del observation["resource"]["code"]
    before = _counts()

    response = FhirClient(clinician).post(_transaction(_new_patient_entry(), observation))

    assert response.status_code == 400
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "entry.1.resource.code" in diagnostics
    assert _counts() == before


def test_unknown_resource_type_in_a_transaction_answers_400(clinician: User) -> None:
    bundle = _transaction(
        {"resource": {"resourceType": "Spaceship"}, "request": {"method": "POST"}}
    )

    response = FhirClient(clinician).post(bundle)

    assert response.status_code == 400
    assert "Spaceship" in response.json()["issue"][0]["diagnostics"]


def test_a_bundle_applies_wholly_or_not_at_all(clinician: User, patient: Patient) -> None:
    condition = _condition_entry("urn:uuid:4f1c2d1e-0000-4000-8000-000000000001")
    condition["resource"]["code"]["coding"] = []  # no ICD-10 code: our record cannot hold it
    before = _counts()

    response = FhirClient(clinician).post(
        _transaction(
            _new_patient_entry(),
            _glucose_entry("urn:uuid:4f1c2d1e-0000-4000-8000-000000000001"),
            condition,
        )
    )

    assert response.status_code == 422
    assert "ICD-10" in response.json()["issue"][0]["diagnostics"]
    assert _counts() == before
    assert not Patient.objects.filter(pin=NEW_PIN).exists()


def test_only_transaction_bundles_are_accepted(clinician: User) -> None:
    bundle = json.loads(json.dumps(_transaction(_new_patient_entry())))
    bundle["type"] = "collection"

    response = FhirClient(clinician).post(bundle)

    assert response.status_code == 400
    assert "transaction" in response.json()["issue"][0]["diagnostics"]
