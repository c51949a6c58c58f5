"""Study list, study page and the viewer's frames: who sees what, and that reads are audited."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from accounts.models import AuditEvent, Organization, User
from ehr.models import Patient
from imaging.models import Instance, ReceivedFile, Series, Study
from imaging.services.ingest import receive_file
from tests.conftest import logged_in_client
from tests.factories.imaging import ct_series, dicom_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def receive(django_capture_on_commit_callbacks: Any) -> Any:
    def _receive(organization: Organization, count: int = 2, **attributes: Any) -> Study:
        slices = ct_series(count, size=64, **attributes)
        with django_capture_on_commit_callbacks(execute=True):
            for ds in slices:
                receive_file(
                    content=dicom_bytes(ds),
                    source=ReceivedFile.Source.UPLOAD,
                    organization=organization,
                )
        return Study.objects.get(study_instance_uid=slices[0].StudyInstanceUID)

    return _receive


def _events(user: User, action: str, outcome: str = AuditEvent.Outcome.ALLOWED) -> Any:
    return AuditEvent.objects.filter(
        actor_user_id=user.pk, action=action, outcome=outcome, object_type="imaging.study"
    )


def test_study_list_shows_only_studies_the_user_may_see_each_read_audited(
    clinician: User, patient: Patient, other_patient: Patient, receive: Any
) -> None:
    mine = receive(patient.organization, patient_id=patient.pin, study_description="Chest CT")
    receive(other_patient.organization, patient_id=other_patient.pin, study_description="Knee CT")

    response = logged_in_client(clinician).get("/imaging/studies/")

    assert response.status_code == 200
    assert list(response.context["page"].object_list) == [mine]
    assert "Chest CT" in response.content.decode()
    assert "Knee CT" not in response.content.decode()
    listed = _events(clinician, AuditEvent.Action.LIST)
    assert list(listed.values_list("object_id", flat=True)) == [str(mine.pk)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"patient": "Mamytova"}, ["head"]),
        ({"patient": "PID-77"}, ["knee"]),
        ({"modality": "mr"}, ["knee"]),
        ({"accession": "ACC-H"}, ["head"]),
        ({"date_from": "2026-11-10", "date_to": "2026-11-20"}, ["head"]),
        ({"date_from": "2026-11-21"}, ["knee"]),
        ({}, ["knee", "head"]),
    ],
)
def test_study_search_filters(
    clinician: User, patient: Patient, receive: Any, query: dict, expected: list[str]
) -> None:
    receive(
        patient.organization,
        patient_id=patient.pin,
        patient_name="Mamytova^Asel",
        study_description="head",
        accession_number="ACC-H",
        study_date="20261115",
    )
    receive(
        patient.organization,
        patient_id="PID-77",
        patient_name="Unknown^Person",
        study_description="knee",
        accession_number="ACC-K",
        study_date="20261125",
        modality="MR",
    )

    response = logged_in_client(clinician).get("/imaging/studies/", query)

    assert [study.description for study in response.context["page"]] == expected


def test_a_bad_search_gets_a_clear_error(clinician: User) -> None:
    response = logged_in_client(clinician).get("/imaging/studies/", {"modality": "C T!"})

    assert response.status_code == 400
    assert "modality is a code" in response.content.decode()


def test_patient_studies_page_lists_that_patients_studies(
    clinician: User, patient: Patient, receive: Any
) -> None:
    study = receive(patient.organization, patient_id=patient.pin)
    receive(patient.organization, patient_id="SOMEONE-ELSE")

    response = logged_in_client(clinician).get(f"/imaging/patients/{patient.pk}/studies/")

    assert response.status_code == 200
    assert list(response.context["page"].object_list) == [study]


def test_study_page_is_audited_and_shows_who_viewed_it(
    clinician: User, patient: Patient, receive: Any
) -> None:
    study = receive(patient.organization, patient_id=patient.pin)
    client = logged_in_client(clinician)

    client.get(f"/imaging/studies/{study.pk}/")
    response = client.get(f"/imaging/studies/{study.pk}/")

    assert response.status_code == 200
    assert _events(clinician, AuditEvent.Action.VIEW).count() == 2
    page = response.content.decode()
    assert "Viewed 2 times" in page
    assert "Bakyt Clinician" in page
    assert Series.objects.get(study=study).thumbnail
    assert f"/imaging/series/{study.series.get().pk}/thumbnail.jpg" in page


def test_another_clinic_gets_404_and_the_refusal_is_audited(
    other_clinician: User, patient: Patient, receive: Any
) -> None:
    study = receive(patient.organization, patient_id=patient.pin)
    client = logged_in_client(other_clinician)

    assert client.get(f"/imaging/studies/{study.pk}/").status_code == 404
    assert client.get(f"/imaging/studies/{study.pk}/viewer/").status_code == 404
    assert _events(other_clinician, AuditEvent.Action.VIEW, AuditEvent.Outcome.DENIED).count() == 2


def test_viewer_frame_is_a_jpeg_audited_once_per_series(
    clinician: User, patient: Patient, receive: Any
) -> None:
    study = receive(patient.organization, count=3, patient_id=patient.pin)
    client = logged_in_client(clinician)
    viewer = client.get(f"/imaging/studies/{study.pk}/viewer/")
    views_before = _events(clinician, AuditEvent.Action.VIEW).count()
    instances = list(Instance.objects.order_by("instance_number"))

    responses = [
        client.get(f"/imaging/instances/{instance.pk}/frames/1.jpg", {"size": 200})
        for instance in instances
    ]
    lung = client.get(
        f"/imaging/instances/{instances[0].pk}/frames/1.jpg", {"size": 200, "window": "-600,1500"}
    )

    assert viewer.status_code == 200
    assert all(response.status_code == 200 for response in responses)
    assert responses[0]["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(responses[0].content)).size == (64, 64)  # never enlarged
    assert lung.content != responses[0].content
    # One more view for the series opened, not one per frame.
    assert _events(clinician, AuditEvent.Action.VIEW).count() == views_before + 1


def test_viewer_frame_is_access_checked(
    other_clinician: User, patient: Patient, receive: Any
) -> None:
    receive(patient.organization, patient_id=patient.pin)
    instance = Instance.objects.first()
    series = instance.series
    client = logged_in_client(other_clinician)

    assert client.get(f"/imaging/instances/{instance.pk}/frames/1.jpg").status_code == 404
    assert client.get(f"/imaging/series/{series.pk}/thumbnail.jpg").status_code == 404
    assert _events(other_clinician, AuditEvent.Action.VIEW, AuditEvent.Outcome.DENIED).count() == 2


def test_a_frame_that_does_not_exist_is_404(
    clinician: User, patient: Patient, receive: Any
) -> None:
    receive(patient.organization, patient_id=patient.pin, count=1)
    instance = Instance.objects.get()

    response = logged_in_client(clinician).get(f"/imaging/instances/{instance.pk}/frames/2.jpg")

    assert response.status_code == 404
    assert "frame 2 does not exist" in response.content.decode()


def test_a_bad_window_gets_a_clear_error(clinician: User, patient: Patient, receive: Any) -> None:
    receive(patient.organization, patient_id=patient.pin, count=1)
    instance = Instance.objects.get()

    response = logged_in_client(clinician).get(
        f"/imaging/instances/{instance.pk}/frames/1.jpg", {"window": "wide"}
    )

    assert response.status_code == 400
    assert "center,width" in response.content.decode()


def test_cine_series_plays_its_mp4_in_the_viewer(
    clinician: User, patient: Patient, django_capture_on_commit_callbacks: Any
) -> None:
    from imaging.demo import ultrasound_cine

    cine = ultrasound_cine(frames=6, size=64)
    cine.PatientID = patient.pin
    with django_capture_on_commit_callbacks(execute=True):
        receive_file(
            content=dicom_bytes(cine),
            source=ReceivedFile.Source.UPLOAD,
            organization=patient.organization,
        )
    series = Series.objects.get()
    client = logged_in_client(clinician)

    viewer = client.get(f"/imaging/studies/{series.study_id}/viewer/")
    video = client.get(f"/imaging/series/{series.pk}/video.mp4")

    assert f"/imaging/series/{series.pk}/video.mp4" in viewer.content.decode()
    assert video.status_code == 200
    assert video["Content-Type"] == "video/mp4"
    whole = b"".join(video.streaming_content)
    assert whole[4:8] == b"ftyp"
    # Safari (iPhones) plays only from servers that answer byte ranges.
    part = client.get(f"/imaging/series/{series.pk}/video.mp4", HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert part.content == whole[100:200]
