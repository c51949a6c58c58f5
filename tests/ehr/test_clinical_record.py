"""The record: clinicians of the patient's organization write it; the timeline shows it."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import AuditEvent, User
from ehr.models import Allergy, Condition, Document, Encounter, Medication, Observation, Patient
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db

ENTRIES = [
    ("encounter", {"kind": "outpatient", "status": "finished",
                   "started_at": "2026-11-20T09:30", "reason": "Headache, dizziness"}, Encounter),
    ("condition", {"icd10_code": "i10", "description": "Essential hypertension",
                   "clinical_status": "active"}, Condition),
    ("medication", {"name": "Amlodipine", "dose": "5 mg", "frequency": "once a day",
                    "status": "active"}, Medication),
    ("allergy", {"substance": "Penicillin", "reaction": "rash", "severity": "moderate",
                 "status": "active"}, Allergy),
    ("observation", {"category": "laboratory", "code": "2345-7", "display": "Glucose",
                     "value": "7.8", "unit": "mmol/L", "reference_low": "3.9",
                     "reference_high": "6.1", "interpretation": "H",
                     "effective_at": "2026-11-20T10:00"}, Observation),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "data", "model"), ENTRIES)
def test_clinician_adds_each_kind_of_entry_and_it_shows_in_the_record(
    clinician: User, patient: Patient, kind: str, data: dict, model: type
):
    client = logged_in_client(clinician)

    response = client.post(f"/patients/{patient.pk}/add/{kind}/", data)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = model.objects.get(patient=patient)
    assert entry.recorded_by == clinician
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    shown = {"encounter": "Headache", "condition": "I10", "medication": "Amlodipine",
             "allergy": "Penicillin", "observation": "7.8 mmol/L"}[kind]  # fmt: skip
    assert shown in page
    assert AuditEvent.objects.filter(action="create", patient_id=patient.pk).exists()


def test_blood_pressure_is_one_observation_with_two_components(clinician: User, patient):
    client = logged_in_client(clinician)

    client.post(
        f"/patients/{patient.pk}/add/observation/",
        {"category": "vital-signs", "systolic": "150", "diastolic": "95",
         "effective_at": "2026-11-20T10:00"},
    )  # fmt: skip

    observation = Observation.objects.get(patient=patient)
    assert observation.code == "85354-9"
    assert [c["code"] for c in observation.components] == ["8480-6", "8462-4"]
    assert observation.value_display == "150/95 mmHg"


def test_a_wrong_icd10_code_gets_a_clear_error(clinician: User, patient):
    response = logged_in_client(clinician).post(
        f"/patients/{patient.pk}/add/condition/",
        {"icd10_code": "hyper", "description": "x", "clinical_status": "active"},
    )

    assert response.status_code == 400
    assert "looks like I10" in response.content.decode()
    assert not Condition.objects.exists()


@pytest.mark.parametrize(
    "role_fixture", ["other_clinician", "coordinator", "patient_user", "specialist"]
)
def test_only_the_patients_clinicians_write_the_record(request, role_fixture: str, patient):
    user = request.getfixturevalue(role_fixture)

    response = logged_in_client(user).post(
        f"/patients/{patient.pk}/add/allergy/", {"substance": "Latex", "status": "active"}
    )

    assert response.status_code == 404
    assert not Allergy.objects.exists()


def test_clinician_marks_a_condition_resolved_and_it_leaves_the_problem_list(
    clinician: User, patient
):
    client = logged_in_client(clinician)
    client.post(
        f"/patients/{patient.pk}/add/condition/",
        {"icd10_code": "J06.9", "description": "Acute URI", "clinical_status": "active"},
    )
    condition = Condition.objects.get()

    client.post(
        f"/patients/{patient.pk}/condition/{condition.pk}/edit/",
        {"icd10_code": "J06.9", "description": "Acute URI", "clinical_status": "resolved"},
    )

    condition.refresh_from_db()
    assert condition.clinical_status == "resolved"
    assert AuditEvent.objects.filter(action="update", object_id=str(condition.pk)).exists()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_documents_are_kept_and_read_back_only_by_those_allowed(
    clinician: User, other_clinician: User, patient_user: User, patient
):
    client = logged_in_client(clinician)
    upload = SimpleUploadedFile("discharge.pdf", PDF, content_type="application/pdf")

    client.post(
        f"/patients/{patient.pk}/add/document/",
        {"title": "Discharge summary", "kind": "discharge", "file": upload},
    )

    document = Document.objects.get()
    assert document.content_type == "application/pdf"
    assert document.size == len(PDF)
    url = f"/patients/{patient.pk}/documents/{document.pk}/"
    own = logged_in_client(patient_user).get(url)
    assert b"".join(own.streaming_content) == PDF
    assert logged_in_client(other_clinician).get(url).status_code == 404
    assert AuditEvent.objects.filter(object_type="ehr.document", action="view").count() == 1


def test_a_file_that_is_not_a_pdf_or_image_is_refused_with_the_reason(clinician: User, patient):
    upload = SimpleUploadedFile("report.pdf", b"MZ\x90\x00 not really a pdf", "application/pdf")

    response = logged_in_client(clinician).post(
        f"/patients/{patient.pk}/add/document/",
        {"title": "Report", "kind": "report", "file": upload},
    )

    assert response.status_code == 400
    assert "Only PDF files and JPEG, PNG or WebP images" in response.content.decode()
    assert not Document.objects.exists()


def test_patient_reads_own_record_but_cannot_change_it(patient_user: User, patient):
    client = logged_in_client(patient_user)

    page = client.get(f"/patients/{patient.pk}/").content.decode()

    assert patient.family_name in page
    assert f"/patients/{patient.pk}/add/" not in page
    assert client.get(f"/patients/{patient.pk}/edit/").status_code == 404


def test_timeline_lists_entries_newest_first(clinician: User, patient):
    client = logged_in_client(clinician)
    for day, reason in [("2026-01-10", "January visit"), ("2026-03-05", "March visit")]:
        client.post(f"/patients/{patient.pk}/add/encounter/",
                    {"kind": "outpatient", "status": "finished", "started_at": f"{day}T09:00",
                     "reason": reason})  # fmt: skip

    page = client.get(f"/patients/{patient.pk}/").content.decode()

    assert page.index("March visit") < page.index("January visit")


def test_image_uploads_are_accepted(clinician: User, patient):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(buffer, "PNG")
    upload = SimpleUploadedFile("xray-photo.png", buffer.getvalue(), "image/png")

    logged_in_client(clinician).post(
        f"/patients/{patient.pk}/add/document/", {"title": "", "kind": "image", "file": upload}
    )

    assert Document.objects.get().content_type == "image/png"
