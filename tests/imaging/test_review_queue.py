"""The review queue: studies that match nobody (or several) wait for the receiving clinic's
clinicians, who attach them to the right patient; every step is audited."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AuditEvent, Membership, Organization, User
from ehr.models import Patient
from imaging.models import ReceivedFile, Study
from imaging.services.ingest import receive_file
from tests.conftest import logged_in_client
from tests.factories.accounts import MembershipFactory, member
from tests.factories.ehr import PatientFactory
from tests.factories.imaging import ct_dataset, dicom_bytes

pytestmark = pytest.mark.django_db

Role = Membership.Role


def _receive(organization: Organization, capture: Any, **attributes: Any) -> Study:
    ds = ct_dataset(**attributes)
    with capture(execute=True):
        receive_file(
            content=dicom_bytes(ds), source=ReceivedFile.Source.STORE, organization=organization
        )
    return Study.objects.get(study_instance_uid=ds.StudyInstanceUID)


@pytest.fixture
def unmatched(clinic: Organization, django_capture_on_commit_callbacks: Any) -> Study:
    study = _receive(
        clinic,
        django_capture_on_commit_callbacks,
        patient_id="LOCAL-77",
        patient_name="Mamytova^Asel",
        birth_date="19900101",
    )
    assert study.match == Study.Match.UNMATCHED
    return study


def test_unmatched_study_is_listed_for_the_receiving_clinics_clinician_only(
    unmatched: Study, clinician: User, other_clinician: User, coordinator: User
) -> None:
    page = logged_in_client(clinician).get("/imaging/review/")

    assert page.status_code == 200
    assert "Mamytova^Asel" in page.content.decode()
    assert "LOCAL-77" in page.content.decode()
    assert AuditEvent.objects.filter(
        actor_user_id=clinician.pk,
        action=AuditEvent.Action.LIST,
        object_type="imaging.study",
        object_id=str(unmatched.pk),
    ).exists()
    for other in (other_clinician, coordinator):
        assert "Mamytova" not in logged_in_client(other).get("/imaging/review/").content.decode()


def test_the_review_queue_is_only_read(clinician: User) -> None:
    assert logged_in_client(clinician).post("/imaging/review/").status_code == 405


def test_candidate_patients_are_proposed(
    unmatched: Study, clinician: User, clinic: Organization
) -> None:
    candidate = PatientFactory(
        organization=clinic, family_name="Mamytova", given_name="Asel", pin="10101199000777"
    )

    page = logged_in_client(clinician).get("/imaging/review/").content.decode()

    assert candidate.full_name in page
    assert f'name="patient" value="{candidate.pk}"' in page


def test_clinician_attaches_study_by_pin_and_it_is_audited(
    unmatched: Study, clinician: User, patient: Patient
) -> None:
    client = logged_in_client(clinician)

    response = client.post(f"/imaging/review/{unmatched.pk}/attach/", {"pin": patient.pin})

    assert response.status_code == 302
    unmatched.refresh_from_db()
    assert unmatched.patient == patient
    assert unmatched.match == Study.Match.MATCHED
    assert AuditEvent.objects.filter(
        actor_user_id=clinician.pk,
        action=AuditEvent.Action.UPDATE,
        object_id=str(unmatched.pk),
        patient_id=patient.pk,
    ).exists()
    assert "Mamytova^Asel" not in client.get("/imaging/review/").content.decode()


def test_clinician_attaches_a_proposed_candidate(
    unmatched: Study, clinician: User, patient: Patient
) -> None:
    response = logged_in_client(clinician).post(
        f"/imaging/review/{unmatched.pk}/attach/", {"patient": patient.pk}
    )

    assert response.status_code == 302
    unmatched.refresh_from_db()
    assert unmatched.patient == patient


def test_cannot_attach_to_a_patient_of_another_clinic(
    unmatched: Study, clinician: User, other_patient: Patient
) -> None:
    response = logged_in_client(clinician).post(
        f"/imaging/review/{unmatched.pk}/attach/", {"patient": other_patient.pk}
    )
    by_pin = logged_in_client(clinician).post(
        f"/imaging/review/{unmatched.pk}/attach/", {"pin": other_patient.pin}
    )

    assert response.status_code == 400
    assert by_pin.status_code == 400
    assert "No patient you may see has this PIN" in by_pin.content.decode()
    unmatched.refresh_from_db()
    assert unmatched.patient is None


def test_patient_seen_but_not_changeable_is_refused(
    patient: Patient, naryn_centre: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    # A clinician of the regional centre (which received the study) who also coordinates the
    # region sees the clinic's patient, but may not change that patient's record.
    doctor = member(naryn_centre, Role.CLINICIAN, email="centre.doc@example.kg")
    MembershipFactory(organization=naryn_centre, role=Role.COORDINATOR, user=doctor)
    study = _receive(naryn_centre, django_capture_on_commit_callbacks, patient_id="X-9")

    response = logged_in_client(doctor).post(
        f"/imaging/review/{study.pk}/attach/", {"pin": patient.pin}
    )

    assert response.status_code == 403
    assert "You may not change this patient" in response.content.decode()
    study.refresh_from_db()
    assert study.patient is None


def test_stranger_cannot_attach(unmatched: Study, other_clinician: User, patient: Patient) -> None:
    response = logged_in_client(other_clinician).post(
        f"/imaging/review/{unmatched.pk}/attach/", {"pin": patient.pin}
    )

    assert response.status_code == 404
    unmatched.refresh_from_db()
    assert unmatched.patient is None


def test_empty_form_gets_a_clear_error(unmatched: Study, clinician: User) -> None:
    response = logged_in_client(clinician).post(f"/imaging/review/{unmatched.pk}/attach/", {})

    assert response.status_code == 400
    assert "Choose a candidate or enter the patient" in response.content.decode()
