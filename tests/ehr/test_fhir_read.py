from __future__ import annotations

import datetime as dt

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient

from accounts.models import AuditEvent, Organization, User
from ehr.models import Patient
from tests.conftest import logged_in_client
from tests.ehr.test_fhir_helpers import FhirClient
from tests.factories.ehr import PatientFactory


def _ids(bundle: dict) -> list[int]:
    return [int(entry["resource"]["id"]) for entry in bundle.get("entry", [])]


def test_metadata_describes_a_fhir_4_0_1_json_server(db: None) -> None:
    response = FhirClient(None).get("metadata")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion == "4.0.1"
    assert "json" in statement.format
    patient = next(r for r in statement.rest[0].resource if r.type == "Patient")
    assert {i.code for i in patient.interaction} == {"read", "search-type"}
    assert patient.operation[0].name == "everything"
    assert statement.rest[0].interaction[0].code == "transaction"


def test_clinician_reads_patient_with_pin_and_both_spellings_of_the_name(
    clinician: User, clinic: Organization
) -> None:
    patient = PatientFactory(
        organization=clinic,
        pin="21505199000123",
        family_name="Жумабеков",
        given_name="Азамат",
        patronymic="Бакытович",
        sex=Patient.Sex.MALE,
        birth_date=dt.date(1990, 5, 15),
    )

    response = FhirClient(clinician).get(f"Patient/{patient.pk}")

    assert response.status_code == 200
    resource = response.json()
    FhirPatient.model_validate(resource)
    assert resource["identifier"] == [{"system": "urn:telemed:pin", "value": "21505199000123"}]
    assert resource["name"][0]["family"] == "Жумабеков"
    assert resource["name"][0]["given"] == ["Азамат", "Бакытович"]
    assert resource["name"][1]["family"] == "Jumabekov"
    assert resource["gender"] == "male"
    assert resource["birthDate"] == "1990-05-15"


def test_reading_a_patient_is_audited_with_patient_and_region(
    clinician: User, patient: Patient
) -> None:
    FhirClient(clinician).get(f"Patient/{patient.pk}")

    event = AuditEvent.objects.get(actor_user_id=clinician.pk)
    assert (event.action, event.patient_id, event.region, event.channel) == (
        AuditEvent.Action.VIEW,
        patient.pk,
        "naryn",
        "api",
    )


def test_patient_of_another_clinic_answers_404_exactly_like_a_missing_one(
    other_clinician: User, patient: Patient
) -> None:
    api = FhirClient(other_clinician)

    refused = api.get(f"Patient/{patient.pk}")
    missing = api.get("Patient/999999")

    assert refused.status_code == missing.status_code == 404
    assert refused.json() == missing.json()
    OperationOutcome.model_validate(refused.json())
    assert api.get(f"Patient/{patient.pk}/$everything").json() == missing.json()
    denied = AuditEvent.objects.filter(patient_id=patient.pk, outcome=AuditEvent.Outcome.DENIED)
    assert denied.count() == 2


def test_search_by_pin_identifier_returns_a_searchset(
    clinician: User, patient: Patient, other_patient: Patient
) -> None:
    response = FhirClient(clinician).get("Patient", identifier=f"urn:telemed:pin|{patient.pin}")

    assert response.status_code == 200
    bundle = response.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert _ids(bundle) == [patient.pk]
    assert bundle["entry"][0]["search"] == {"mode": "match"}


def test_cyrillic_name_finds_latin_spelled_patient_and_back(
    clinician: User, clinic: Organization, patient: Patient
) -> None:
    cyrillic = PatientFactory(organization=clinic, family_name="Жумабеков", given_name="Азамат")
    api = FhirClient(clinician)

    assert _ids(api.get("Patient", name="Мамытова").json()) == [patient.pk]
    assert _ids(api.get("Patient", name="Zhumabekov").json()) == [cyrillic.pk]
    assert _ids(api.get("Patient", name="jumabekov azamat").json()) == [cyrillic.pk]


def test_search_by_birthdate(clinician: User, clinic: Organization, patient: Patient) -> None:
    born_later = PatientFactory(organization=clinic, birth_date=dt.date(2001, 2, 3))
    api = FhirClient(clinician)

    assert _ids(api.get("Patient", birthdate="2001-02-03").json()) == [born_later.pk]
    assert _ids(api.get("Patient", birthdate="lt2000-01-01").json()) == [patient.pk]
    assert api.get("Patient", birthdate="03.02.2001").status_code == 400


def test_search_shows_only_patients_the_user_may_read_and_audits_each(
    clinician: User, patient: Patient, other_patient: Patient
) -> None:
    bundle = FhirClient(clinician).get("Patient").json()

    assert _ids(bundle) == [patient.pk]
    events = AuditEvent.objects.filter(actor_user_id=clinician.pk)
    assert [(e.action, e.patient_id) for e in events] == [(AuditEvent.Action.LIST, patient.pk)]


def test_missing_or_wrong_token_answers_401_operation_outcome(patient: Patient) -> None:
    for api in (FhirClient(None), FhirClient(None, token="not-a-token")):
        response = api.get(f"Patient/{patient.pk}")

        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].code == "login"


def test_logged_in_browser_session_may_read(clinician: User, patient: Patient) -> None:
    client = logged_in_client(clinician)

    response = client.get(f"/fhir/Patient/{patient.pk}")

    assert response.status_code == 200


def test_unknown_resource_type_answers_operation_outcome(clinician: User) -> None:
    response = FhirClient(clinician).get("Spaceship/1")

    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-supported"
