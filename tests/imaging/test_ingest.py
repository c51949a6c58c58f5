"""Ingest: every file is kept as received, then indexed once; failures keep their reason."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_save
from pydicom.data import get_testdata_file

from accounts.models import AuditEvent, Organization, User
from ehr.models import Patient
from imaging.models import Instance, ReceivedFile, Series, Study
from imaging.services.ingest import ingest, ingest_many, receive_file
from tests.factories.ehr import PatientFactory
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes

pytestmark = pytest.mark.django_db


def _receive(content: bytes, organization: Organization, **kwargs: object) -> ReceivedFile:
    received = receive_file(
        content=content, source=ReceivedFile.Source.UPLOAD, organization=organization, **kwargs
    )
    return received


def test_series_is_indexed_patient_study_series_instance(
    clinic: Organization, clinician: User, django_capture_on_commit_callbacks: object
) -> None:
    slices = ct_series(3, patient_id="X-1", accession_number="A77")

    with django_capture_on_commit_callbacks(execute=True):
        for ds in slices:
            _receive(dicom_bytes(ds), clinic, received_by=clinician)

    study = Study.objects.get()
    assert study.study_instance_uid == slices[0].StudyInstanceUID
    assert (study.number_of_series, study.number_of_instances) == (1, 3)
    assert study.modalities == "CT"
    assert study.accession_number == "A77"
    assert Series.objects.get().number_of_instances == 3
    assert sorted(Instance.objects.values_list("instance_number", flat=True)) == [1, 2, 3]
    assert set(ReceivedFile.objects.values_list("status", flat=True)) == {"ingested"}


def test_file_is_kept_byte_for_byte_with_its_hash(
    clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    content = dicom_bytes(ct_dataset())

    with django_capture_on_commit_callbacks(execute=True):
        received = _receive(content, clinic)

    with received.file.open("rb") as stored:
        assert stored.read() == content
    assert received.sha256 == hashlib.sha256(content).hexdigest()
    assert received.size == len(content)


def test_row_of_a_received_file_says_where_and_from_whom_it_came(
    clinic: Organization, clinician: User
) -> None:
    content = dicom_bytes(ct_dataset())

    received = _receive(
        content, clinic, received_by=clinician, calling_ae="CT_ROOM_2", original_name="x" * 600
    )

    received.error = "checked"
    received.save(update_fields=["error"])  # the returned object is the row, as ingest uses it

    row = ReceivedFile.objects.get()
    assert (row.pk, row.error) == (received.pk, "checked")
    assert (row.source, row.status) == (ReceivedFile.Source.UPLOAD, ReceivedFile.Status.RECEIVED)
    assert (row.organization, row.received_by, row.calling_ae) == (clinic, clinician, "CT_ROOM_2")
    assert row.original_name == "x" * 500
    assert (row.size, row.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert row.file.name == received.file.name
    assert row.file.name.startswith("imaging/received/")
    assert row.received_at == received.received_at


def test_code_listening_for_saved_received_files_still_hears_of_them(clinic: Organization) -> None:
    heard: list[tuple[int, bool]] = []

    def listener(sender: type, instance: ReceivedFile, created: bool, **kwargs: object) -> None:
        heard.append((instance.pk, created))

    post_save.connect(listener, sender=ReceivedFile)
    try:
        received = _receive(dicom_bytes(ct_dataset()), clinic)
    finally:
        post_save.disconnect(listener, sender=ReceivedFile)

    assert heard == [(received.pk, True)]


def test_same_content_received_twice_is_kept_twice(
    settings: Any, tmp_path: Path, clinic: Organization
) -> None:
    settings.MEDIA_ROOT = tmp_path
    content = dicom_bytes(ct_dataset())

    first = _receive(content, clinic)
    second = receive_file(
        content=io.BytesIO(content), source=ReceivedFile.Source.ARCHIVE, organization=clinic
    )

    assert ReceivedFile.objects.count() == 2
    assert first.file.name != second.file.name
    for received in ReceivedFile.objects.all():
        assert received.sha256 == hashlib.sha256(content).hexdigest()
        with received.file.open("rb") as stored:
            assert stored.read() == content


def test_kept_file_and_its_new_folders_have_the_configured_permissions(
    settings: Any, tmp_path: Path, clinic: Organization
) -> None:
    settings.MEDIA_ROOT = tmp_path
    settings.FILE_UPLOAD_PERMISSIONS = 0o640
    settings.FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750

    received = _receive(dicom_bytes(ct_dataset()), clinic)

    path = Path(received.file.path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "imaging").stat().st_mode) == 0o750


def test_file_is_kept_again_after_its_folder_was_removed(
    settings: Any, tmp_path: Path, clinic: Organization
) -> None:
    settings.MEDIA_ROOT = tmp_path
    _receive(dicom_bytes(ct_dataset()), clinic)
    shutil.rmtree(tmp_path / "imaging")
    content = dicom_bytes(ct_dataset())

    received = _receive(content, clinic)

    with received.file.open("rb") as stored:
        assert stored.read() == content


class _CutOff(io.BytesIO):
    """An upload whose connection drops while it is being stored: its bytes can be hashed once,
    then the second read fails halfway (as a spooled request body does when the disk fails)."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.passes = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset == 0 and whence == 0:
            self.passes += 1
        return super().seek(offset, whence)

    def read(self, size: int | None = -1) -> bytes:
        if self.passes > 1 and self.tell() > 0:
            raise OSError("connection reset while storing")
        return super().read(min(size, 4096) if size and size > 0 else 4096)


def test_file_cut_off_while_kept_leaves_no_part_of_it_and_no_row(
    settings: Any, tmp_path: Path, clinic: Organization
) -> None:
    settings.MEDIA_ROOT = tmp_path
    content = dicom_bytes(ct_dataset())

    with pytest.raises(OSError, match="connection reset"):
        receive_file(
            content=_CutOff(content), source=ReceivedFile.Source.UPLOAD, organization=clinic
        )

    assert not ReceivedFile.objects.exists()
    assert [files for _, _, files in os.walk(tmp_path) if files] == []


def test_resending_the_same_instance_changes_nothing(
    clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    content = dicom_bytes(ct_dataset())

    with django_capture_on_commit_callbacks(execute=True):
        first = _receive(content, clinic)
        again = _receive(content, clinic)
    first.refresh_from_db()
    again.refresh_from_db()

    assert first.status == ReceivedFile.Status.INGESTED
    assert again.status == ReceivedFile.Status.DUPLICATE
    assert again.instance_id == first.instance_id
    assert Instance.objects.count() == 1
    assert Study.objects.get().number_of_instances == 1


def test_different_file_with_same_uid_is_kept_and_flagged(
    clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    original = ct_dataset(sop_uid="1.2.826.0.1.3680043.8.498.1")
    changed = ct_dataset(sop_uid="1.2.826.0.1.3680043.8.498.1", study_description="other")

    with django_capture_on_commit_callbacks(execute=True):
        first = _receive(dicom_bytes(original), clinic)
        second = _receive(dicom_bytes(changed), clinic)
    second.refresh_from_db()

    assert second.status == ReceivedFile.Status.CONFLICT
    assert "already indexed" in second.error
    assert Instance.objects.get().received_file_id == first.pk
    assert second.file.size == len(dicom_bytes(changed))


@pytest.mark.django_db(transaction=True)
def test_a_study_indexed_by_another_worker_meanwhile_gets_every_file_once(
    clinic: Organization,
) -> None:
    # A worker reads which studies exist before it takes the write lock; another worker may
    # create the same study in between. Simulated at the database: right after this worker's
    # read of the studies, the third file is indexed (as another worker would) and committed.
    received = [
        receive_file(
            content=dicom_bytes(ds),
            source=ReceivedFile.Source.STORE,
            organization=clinic,
            queue_ingest=False,
        )
        for ds in ct_series(3, patient_id="RACE-1")
    ]
    interleaved: list[str] = []
    started = []

    def other_worker_meanwhile(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        result = execute(sql, params, many, context)
        reads_studies = sql.startswith("SELECT") and '"imaging_study"' in sql.split(" WHERE ")[0]
        if reads_studies and not started:
            started.append(True)
            interleaved.append(ingest(received[2]).status)
        return result

    with connection.execute_wrapper(other_worker_meanwhile):
        ingest_many(received[:2])

    assert interleaved == [ReceivedFile.Status.INGESTED]
    assert set(ReceivedFile.objects.values_list("status", flat=True)) == {"ingested"}
    study = Study.objects.get()
    assert (study.number_of_series, study.number_of_instances) == (1, 3)
    assert Series.objects.get().number_of_instances == 3
    assert Instance.objects.count() == 3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"%PDF-1.4 not an image", "not a DICOM file"),
        (b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI", "transfer syntax"),
    ],
)
def test_file_that_is_not_dicom_is_kept_with_reason(
    clinic: Organization, content: bytes, reason: str, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        received = _receive(content, clinic, original_name="scan.dcm")
    received.refresh_from_db()

    assert received.status == ReceivedFile.Status.FAILED
    assert reason in received.error
    with received.file.open("rb") as stored:
        assert stored.read() == content
    assert not Study.objects.exists()


def test_truncated_file_fails_with_reason(
    clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    content = dicom_bytes(ct_dataset(size=128))[:-5000]

    with django_capture_on_commit_callbacks(execute=True):
        received = _receive(content, clinic)
    received.refresh_from_db()

    assert received.status == ReceivedFile.Status.FAILED
    assert "truncated" in received.error


def test_compressed_test_files_from_pydicom_are_indexed(
    clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    names = [
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "image_dfl.dcm",
    ]

    with django_capture_on_commit_callbacks(execute=True):
        for name in names:
            with open(get_testdata_file(name, download=False), "rb") as source:
                _receive(source.read(), clinic, original_name=name)

    assert ReceivedFile.objects.filter(status="ingested").count() == len(names)


def test_study_with_patient_id_equal_to_pin_is_attached_to_patient(
    clinic: Organization, patient: Patient, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        _receive(dicom_bytes(ct_dataset(patient_id=patient.pin)), clinic)

    study = Study.objects.get()
    assert study.patient == patient
    assert study.match == Study.Match.MATCHED
    assert AuditEvent.objects.filter(
        object_type="imaging.study", action="create", patient_id=patient.pk
    ).exists()


def test_study_matching_several_patients_by_name_and_birth_waits_for_review(
    clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    for pin in ("11111111111111", "22222222222222"):
        PatientFactory(organization=clinic, pin=pin, family_name="Osmonov", birth_date="1958-07-22")

    with django_capture_on_commit_callbacks(execute=True):
        _receive(
            dicom_bytes(ct_dataset(patient_id="", patient_name="OSMONOV^N", birth_date="19580722")),
            clinic,
        )

    study = Study.objects.get()
    assert study.patient is None
    assert study.match == Study.Match.AMBIGUOUS


def test_another_clinic_cannot_add_images_to_a_study_by_reusing_its_uid(
    clinic: Organization, other_clinic: Organization, django_capture_on_commit_callbacks: object
) -> None:
    first, intruder = ct_series(2)

    with django_capture_on_commit_callbacks(execute=True):
        _receive(dicom_bytes(first), clinic)
        foreign = _receive(dicom_bytes(intruder), other_clinic)
    foreign.refresh_from_db()

    assert foreign.status == ReceivedFile.Status.CONFLICT
    assert "another organization" in foreign.error
    assert Study.objects.get().number_of_instances == 1
    with foreign.file.open("rb") as stored:
        assert stored.read() == dicom_bytes(intruder)
