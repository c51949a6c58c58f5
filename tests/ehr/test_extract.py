"""The EHR extract: one patient, one moment, as a page and a PDF (the FHIR form is tested
with the FHIR API)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from accounts.models import AuditEvent, User
from ehr.models import Allergy, Condition, Medication, Observation, Patient
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db
BISHKEK = ZoneInfo("Asia/Bishkek")


@pytest.fixture
def record(patient: Patient, clinician: User) -> Patient:
    january = dt.datetime(2026, 1, 15, 10, 0, tzinfo=BISHKEK)
    march = dt.datetime(2026, 3, 15, 10, 0, tzinfo=BISHKEK)
    Condition.objects.create(
        patient=patient, icd10_code="I10", description="Hypertension", recorded_at=january
    )
    Condition.objects.create(
        patient=patient,
        icd10_code="J06.9",
        description="Acute URI",
        clinical_status="resolved",
        recorded_at=january,
    )
    Medication.objects.create(patient=patient, name="Amlodipine", dose="5 mg", recorded_at=january)
    Allergy.objects.create(
        patient=patient, substance="Penicillin", reaction="rash", recorded_at=january
    )
    Observation.objects.create(
        patient=patient,
        category="laboratory",
        source="lab",
        code="4548-4",
        display="HbA1c",
        value="8.1",
        unit="%",
        interpretation="H",
        effective_at=january,
    )
    Observation.objects.create(
        patient=patient,
        category="laboratory",
        source="lab",
        code="4548-4",
        display="HbA1c",
        value="7.2",
        unit="%",
        effective_at=march,
    )
    Observation.objects.create(
        patient=patient,
        category="vital-signs",
        source="patient",
        code="29463-7",
        display="Body weight",
        value="71.5",
        unit="kg",
        effective_at=march,
    )
    Condition.objects.create(
        patient=patient, icd10_code="E11.9", description="Type 2 diabetes", recorded_at=march
    )
    return patient  # fmt: skip


def test_extract_summarises_problems_medications_allergies_and_latest_values(
    clinician: User, record: Patient
):
    page = logged_in_client(clinician).get(f"/patients/{record.pk}/extract/").content.decode()

    for shown in ["I10", "Hypertension", "E11.9", "Amlodipine 5 mg", "Penicillin", "7.2 %",
                  "71.5 kg"]:  # fmt: skip
        assert shown in page
    assert "Acute URI" not in page  # resolved problems are not current
    assert "8.1 %" not in page  # only the latest result of each test


def test_extract_as_of_an_earlier_moment_shows_the_record_as_it_stood(
    clinician: User, record: Patient
):
    page = (
        logged_in_client(clinician)
        .get(f"/patients/{record.pk}/extract/", {"at": "2026-02-01T00:00"})
        .content.decode()
    )

    assert "8.1 %" in page
    assert "7.2 %" not in page
    assert "E11.9" not in page


def test_extract_with_a_malformed_time_is_a_clear_error(clinician: User, record: Patient):
    response = logged_in_client(clinician).get(
        f"/patients/{record.pk}/extract/", {"at": "last tuesday"}
    )

    assert response.status_code == 400
    assert "2026-05-01T10:00" in response.content.decode()


def test_extract_pdf_is_a_pdf_with_an_embedded_cyrillic_font(clinician: User, record: Patient):
    response = logged_in_client(clinician).get(f"/patients/{record.pk}/extract.pdf")

    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert b"DejaVu" in response.content
    assert AuditEvent.objects.filter(
        action="export", patient_id=record.pk, actor_user_id=clinician.pk
    ).exists()


def test_extract_is_refused_like_a_missing_patient(other_clinician: User, record: Patient):
    client = logged_in_client(other_clinician)

    assert client.get(f"/patients/{record.pk}/extract/").status_code == 404
    assert client.get(f"/patients/{record.pk}/extract.pdf").status_code == 404


def test_extract_as_a_fhir_bundle_validates_and_is_audited(clinician: User, record: Patient):
    from fhir.resources.R4B.bundle import Bundle

    response = logged_in_client(clinician).get(f"/patients/{record.pk}/extract.fhir.json")

    bundle = Bundle.model_validate(response.json())
    kinds = sorted({entry.resource.get_resource_type() for entry in bundle.entry})
    assert response["Content-Type"].startswith("application/fhir+json")
    assert kinds == ["AllergyIntolerance", "Condition", "MedicationStatement", "Observation",
                     "Patient"]  # fmt: skip
    assert AuditEvent.objects.filter(action="export", patient_id=record.pk).exists()


def test_fhir_clients_post_transactions_to_the_base_url_without_a_slash(
    clinician: User, patient: Patient
):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=clinician).key
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}

    response = logged_in_client(clinician).post(
        "/fhir", bundle, content_type="application/fhir+json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip

    assert response.status_code == 200
    assert response.json()["type"] == "transaction-response"
