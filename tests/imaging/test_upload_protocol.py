"""The resumable upload protocol: chunks at offsets, resume after a drop, limits, ownership."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from ehr.models import Patient
from imaging.models import Instance, ReceivedFile, Study, UploadSession
from imaging.services.uploads import remove_abandoned_uploads, staging_path
from tests.conftest import logged_in_client
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes

pytestmark = pytest.mark.django_db

CHUNK = 4096


def start(client: Client, **data: Any) -> dict[str, Any]:
    response = client.post("/imaging/uploads/", data, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def declare(client: Client, batch: dict[str, Any], name: str, size: int) -> dict[str, Any]:
    response = client.post(
        batch["files_url"], {"name": name, "size": size}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def send(client: Client, url: str, offset: int, chunk: bytes) -> Any:
    return client.generic(
        "PATCH",
        url,
        chunk,
        content_type="application/offset+octet-stream",
        HTTP_UPLOAD_OFFSET=str(offset),
    )


def test_file_sent_in_chunks_is_kept_byte_identical_and_indexed(
    clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = logged_in_client(clinician)
    content = dicom_bytes(ct_dataset(size=64, accession_number="CHUNKED"))
    upload = declare(client, start(client), "slice.dcm", len(content))

    with django_capture_on_commit_callbacks(execute=True):
        for offset in range(0, len(content), CHUNK):
            response = send(client, upload["url"], offset, content[offset : offset + CHUNK])
            assert response.status_code == 200, response.content

    assert response.json()["is_complete"] is True
    received = ReceivedFile.objects.get()
    assert received.sha256 == hashlib.sha256(content).hexdigest()
    with received.file.open("rb") as stored:
        assert stored.read() == content
    assert received.status == ReceivedFile.Status.INGESTED
    assert received.source == ReceivedFile.Source.UPLOAD
    assert Study.objects.get().accession_number == "CHUNKED"
    assert not staging_path(UploadSession.objects.get()).exists()


def test_a_malformed_content_length_is_answered_with_the_offset_to_resend_from(
    clinician: User,
) -> None:
    client = logged_in_client(clinician)
    content = dicom_bytes(ct_dataset(size=16))
    upload = declare(client, start(client), "slice.dcm", len(content))

    response = client.generic(
        "PATCH",
        upload["url"],
        content,
        content_type="application/offset+octet-stream",
        HTTP_UPLOAD_OFFSET="0",
        CONTENT_LENGTH="12abc",
    )

    # No usable length, so no body is read (as Django reads it): nothing taken, and the
    # offset tells the client to send the chunk again.
    assert response.status_code == 200, response.content
    assert response["Upload-Offset"] == "0"
    assert response.json()["is_complete"] is False


def test_chunk_at_wrong_offset_answers_409_with_current_offset(clinician: User) -> None:
    client = logged_in_client(clinician)
    content = dicom_bytes(ct_dataset())
    upload = declare(client, start(client), "slice.dcm", len(content))
    send(client, upload["url"], 0, content[:CHUNK])

    skipped_ahead = send(client, upload["url"], 2 * CHUNK, content[2 * CHUNK : 3 * CHUNK])
    repeated = send(client, upload["url"], 0, content[:CHUNK])

    for response in (skipped_ahead, repeated):
        assert response.status_code == 409
        assert response.json()["offset"] == CHUNK
        assert response["Upload-Offset"] == str(CHUNK)
    assert UploadSession.objects.get().offset == CHUNK


def test_interrupted_upload_resumes_from_the_offset_the_server_reports(
    clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    content = dicom_bytes(ct_dataset(size=96, accession_number="RESUMED"))
    first_client = logged_in_client(clinician)
    upload = declare(first_client, start(first_client), "slice.dcm", len(content))
    send(first_client, upload["url"], 0, content[:CHUNK])
    send(first_client, upload["url"], CHUNK, content[CHUNK : 2 * CHUNK])
    # The link drops, the page is reloaded: a new session of the same user asks where it was.

    client = logged_in_client(clinician)
    head = client.head(upload["url"])
    offset = int(head["Upload-Offset"])
    with django_capture_on_commit_callbacks(execute=True):
        while offset < len(content):
            response = send(client, upload["url"], offset, content[offset : offset + 3 * CHUNK])
            offset = int(response["Upload-Offset"])

    assert int(head["Upload-Length"]) == len(content)
    assert int(head["Upload-Offset"]) == 2 * CHUNK
    with ReceivedFile.objects.get().file.open("rb") as stored:
        assert stored.read() == content
    assert Instance.objects.get().series.study.accession_number == "RESUMED"


def test_file_over_the_size_limit_is_refused(clinician: User, settings: Any) -> None:
    settings.IMAGING_MAX_FILE_BYTES = 10_000
    client = logged_in_client(clinician)
    batch = start(client)

    response = client.post(
        batch["files_url"], {"name": "big.dcm", "size": 10_001}, content_type="application/json"
    )

    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert not UploadSession.objects.exists()


def test_chunk_beyond_the_declared_size_is_refused(clinician: User) -> None:
    client = logged_in_client(clinician)
    upload = declare(client, start(client), "small.dcm", 10)

    response = send(client, upload["url"], 0, b"x" * 11)

    assert response.status_code == 400
    assert UploadSession.objects.get().offset == 0


def test_another_user_cannot_append_to_or_read_my_upload(
    clinician: User, other_clinician: User
) -> None:
    mine = logged_in_client(clinician)
    upload = declare(mine, start(mine), "slice.dcm", 100)
    theirs = logged_in_client(other_clinician)

    assert send(theirs, upload["url"], 0, b"x" * 10).status_code == 404
    assert theirs.head(upload["url"]).status_code == 404
    assert UploadSession.objects.get().offset == 0


def test_another_user_cannot_add_files_to_my_batch(clinician: User, other_clinician: User) -> None:
    batch = start(logged_in_client(clinician))

    response = logged_in_client(other_clinician).post(
        batch["files_url"], {"name": "x.dcm", "size": 10}, content_type="application/json"
    )

    assert response.status_code == 404


def test_patient_of_another_clinic_cannot_be_chosen(
    clinician: User, other_patient: Patient
) -> None:
    client = logged_in_client(clinician)

    response = client.post(
        "/imaging/uploads/", {"patient": other_patient.pk}, content_type="application/json"
    )

    assert response.status_code == 404
    assert "patient" in response.json()["error"]


def test_only_clinicians_upload(coordinator: User, patient_user: User) -> None:
    for user in (coordinator, patient_user):
        response = logged_in_client(user).post(
            "/imaging/uploads/", {}, content_type="application/json"
        )

        assert response.status_code == 403


def test_upload_without_login_is_refused_with_401() -> None:
    response = Client().post("/imaging/uploads/", {}, content_type="application/json")

    assert response.status_code == 401


def test_requests_without_csrf_token_are_refused(clinician: User) -> None:
    client = logged_in_client(clinician)
    client.handler.enforce_csrf_checks = True

    response = client.post("/imaging/uploads/", {}, content_type="application/json")

    assert response.status_code == 403


def test_batch_status_counts_files_and_gives_reasons(
    clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = logged_in_client(clinician)
    batch = start(client)
    good = dicom_bytes(ct_dataset())
    bad = b"this is not an image at all"
    with django_capture_on_commit_callbacks(execute=True):
        for name, content in (("good.dcm", good), ("bad.dcm", bad)):
            upload = declare(client, batch, name, len(content))
            send(client, upload["url"], 0, content)

    status = client.get(batch["status_url"]).json()

    assert status["counts"] == {"ingested": 1, "failed": 1}
    assert status["failed"] == [
        {"name": "bad.dcm", "reason": "not a DICOM file (no DICM preamble)"}
    ]
    assert status["uploads"] == {"declared": 2, "complete": 2}
    assert status["studies"] == 1
    assert status["is_done"] is True


def test_abandoned_upload_is_removed_after_a_day_and_then_refused(clinician: User) -> None:
    client = logged_in_client(clinician)
    upload = declare(client, start(client), "slice.dcm", 100)
    send(client, upload["url"], 0, b"x" * 10)
    session = UploadSession.objects.get()
    assert staging_path(session).exists()

    later = timezone.now() + dt.timedelta(hours=25)
    UploadSession.objects.update(updated_at=timezone.now() - dt.timedelta(hours=25))
    remove_abandoned_uploads(now=later)

    assert not staging_path(session).exists()
    assert client.head(upload["url"]).status_code == 410
    assert send(client, upload["url"], 10, b"y" * 10).status_code == 410


def test_zip_sent_through_the_protocol_is_unpacked_and_refusals_reported(
    clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, ds in enumerate(ct_series(2, accession_number="ZIPPED")):
            archive.writestr(f"CT/IM{number}", dicom_bytes(ds))
        archive.writestr("../escape.dcm", dicom_bytes(ct_dataset()))
    content = buffer.getvalue()
    client = logged_in_client(clinician)
    batch = start(client)
    upload = declare(client, batch, "cd.zip", len(content))

    with django_capture_on_commit_callbacks(execute=True):
        send(client, upload["url"], 0, content)
    status = client.get(batch["status_url"]).json()

    assert status["counts"] == {"ingested": 2}
    assert status["archives"] == [{"name": "cd.zip", "status": "done", "dicomdir": 0, "files": 2}]
    assert status["failed"][0]["name"] == "cd.zip/../escape.dcm"
    assert "path traversal refused" in status["failed"][0]["reason"]
    assert status["is_done"] is True
    assert Study.objects.get().accession_number == "ZIPPED"
    assert not staging_path(UploadSession.objects.get()).exists()


def test_files_of_a_picked_folder_keep_their_path_and_the_dicomdir_is_not_an_image(
    clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = logged_in_client(clinician)
    batch = start(client)
    files = {
        "CD/DICOM/IM0001": dicom_bytes(ct_dataset()),
        "CD/DICOMDIR": b"\0" * 128 + b"DICM" + b"\0" * 64,
    }

    with django_capture_on_commit_callbacks(execute=True):
        for path, content in files.items():
            response = client.post(
                batch["files_url"],
                {"name": path.rsplit("/", 1)[-1], "path": path, "size": len(content)},
                content_type="application/json",
            )
            send(client, response.json()["url"], 0, content)

    received = ReceivedFile.objects.get()
    assert (received.original_name, received.source) == ("CD/DICOM/IM0001", "archive")
    assert received.status == ReceivedFile.Status.INGESTED


def test_upload_page_is_for_clinicians_and_their_patients(
    clinician: User, coordinator: User, patient: Patient, other_patient: Patient
) -> None:
    client = logged_in_client(clinician)

    page = client.get(f"/imaging/upload/?patient={patient.pk}")

    assert page.status_code == 200
    assert patient.full_name in page.content.decode()
    assert client.get(f"/imaging/upload/?patient={other_patient.pk}").status_code == 404
    assert logged_in_client(coordinator).get("/imaging/upload/").status_code == 403


def test_file_that_cannot_be_stored_yet_is_kept_and_stored_on_the_next_try(
    clinician: User, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    client = logged_in_client(clinician)
    content = dicom_bytes(ct_dataset(size=32, accession_number="RETRIED"))
    upload = declare(client, start(client), "slice.dcm", len(content))
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("storage is down")
    good_root, settings.MEDIA_ROOT = settings.MEDIA_ROOT, blocked  # files cannot go there

    failed = send(client, upload["url"], 0, content)
    settings.MEDIA_ROOT = good_root
    with django_capture_on_commit_callbacks(execute=True):
        retried = send(client, upload["url"], len(content), b"")

    assert failed.status_code == 503
    assert "kept" in failed.json()["error"]
    assert retried.status_code == 200, retried.content
    assert retried.json()["is_complete"] is True
    assert Study.objects.get().accession_number == "RETRIED"
