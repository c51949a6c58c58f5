"""Export of a study as a ZIP with a DICOMDIR: readable by pydicom and dcmtk, anonymized when
it leaves the care team, served only to the person who asked, audited, gone after a day."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from pydicom import dcmread
from pydicom.fileset import FileSet

from accounts.models import AuditEvent, Organization, User
from ehr.models import Patient
from imaging.models import ReceivedFile, Study, StudyExport
from imaging.services.exports import build_export, remove_expired_exports, request_export
from imaging.services.ingest import receive_file
from tests.browser.conftest import browser, chromium_path, log_in  # noqa: F401  (fixtures)
from tests.conftest import logged_in_client, require_program
from tests.factories.accounts import PASSWORD
from tests.factories.imaging import ct_series, dicom_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(clinic: Organization, patient: Patient, django_capture_on_commit_callbacks: Any) -> Study:
    """A two-series CT study of `patient` (matched by PIN), with a private tag in each file."""
    first = ct_series(3, patient_id=patient.pin, patient_name="Mamytova^Asel")
    second = ct_series(
        2,
        patient_id=patient.pin,
        patient_name="Mamytova^Asel",
        study_uid=first[0].StudyInstanceUID,
        SeriesNumber=2,
    )
    with django_capture_on_commit_callbacks(execute=True):
        for ds in first + second:
            ds.add_new(0x00291010, "LO", "vendor secret")
            receive_file(
                content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
            )
    study = Study.objects.get()
    assert study.patient == patient
    return study


def _export(
    study: Study, user: User, anonymized: bool, capture: Any
) -> tuple[StudyExport, zipfile.ZipFile]:
    with capture(execute=True):
        export = request_export(study=study, user=user, anonymized=anonymized)
    export.refresh_from_db()
    assert export.status == StudyExport.Status.READY, export.error
    with default_storage.open(export.file, "rb") as stored:
        content = stored.read()
    assert export.size == len(content)
    return export, zipfile.ZipFile(io.BytesIO(content))


def _unpack(archive: zipfile.ZipFile, where: Path) -> Path:
    archive.extractall(where)
    return where


def test_care_team_exports_identified_study_with_dicomdir_pydicom_reads(
    study: Study, clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    export, archive = _export(study, clinician, False, django_capture_on_commit_callbacks)

    assert not export.is_anonymized
    assert "DICOMDIR" in archive.namelist()
    file_set = FileSet(dcmread(_unpack(archive, tmp_path) / "DICOMDIR"))
    assert len(file_set) == 5
    assert {i.SOPInstanceUID for i in file_set} == set(
        study.series.values_list("instances__sop_instance_uid", flat=True)
    )
    patient_ids = {i.load().PatientID for i in file_set}
    assert patient_ids == {study.patient.pin}


def test_coordinator_gets_anonymized_export_even_when_asking_identified(
    study: Study, coordinator: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    export, archive = _export(study, coordinator, False, django_capture_on_commit_callbacks)

    assert export.is_anonymized
    file_set = FileSet(dcmread(_unpack(archive, tmp_path) / "DICOMDIR"))
    datasets = [instance.load() for instance in file_set]
    assert len(datasets) == 5
    for ds in datasets:
        assert ds.PatientIdentityRemoved == "YES"
        assert study.patient.pin not in ds.PatientID
        assert "Mamytova" not in str(ds.PatientName)
        assert not any(element.tag.is_private for element in ds)
        assert ds.StudyInstanceUID != study.study_instance_uid
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 2
    for raw in (archive.read(name) for name in archive.namelist()):
        assert b"Mamytova" not in raw
        assert study.patient.pin.encode() not in raw
    audit = AuditEvent.objects.get(action=AuditEvent.Action.EXPORT, actor_user_id=coordinator.pk)
    assert audit.detail["anonymized"] == "yes"
    assert audit.detail["asked_anonymized"] == "no"


def test_dcmdump_reads_the_dicomdir(
    study: Study, clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    dcmdump = require_program("dcmdump", "dcmtk")
    _, archive = _export(study, clinician, True, django_capture_on_commit_callbacks)
    root = _unpack(archive, tmp_path)

    result = subprocess.run(
        [dcmdump, str(root / "DICOMDIR")], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("IMAGE") >= 5
    assert "(0004,1500)" in result.stdout  # Referenced File ID of the records
    for name in archive.namelist():
        if name not in ("DICOMDIR", "README.TXT"):
            # PS3.10 8.5: up to eight components of up to eight uppercase letters and digits.
            parts = name.split("/")
            assert len(parts) <= 8
            assert all(len(p) <= 8 and p.isalnum() and p.upper() == p for p in parts)
            check = subprocess.run(
                [dcmdump, "-q", str(root / name)], capture_output=True, timeout=60, check=False
            )
            assert check.returncode == 0


def test_zip_entries_are_relative_and_never_climb(
    study: Study, clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    _, archive = _export(study, clinician, True, django_capture_on_commit_callbacks)

    for info in archive.infolist():
        assert not info.filename.startswith("/")
        assert ".." not in info.filename.split("/")
        assert "\\" not in info.filename
    dicom_entries = [i for i in archive.infolist() if i.filename not in ("DICOMDIR", "README.TXT")]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in dicom_entries)


def test_stranger_gets_404_and_the_attempt_is_audited(
    study: Study, talas_coordinator: User
) -> None:
    client = logged_in_client(talas_coordinator)

    response = client.post(f"/imaging/studies/{study.pk}/export/", {"anonymized": "on"})

    assert response.status_code == 404
    assert not StudyExport.objects.exists()
    assert AuditEvent.objects.filter(
        actor_user_id=talas_coordinator.pk, outcome=AuditEvent.Outcome.DENIED
    ).exists()


def test_download_only_by_requester_and_audited(
    study: Study,
    clinician: User,
    other_clinician: User,
    coordinator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = logged_in_client(clinician)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/imaging/studies/{study.pk}/export/", {"next": "/imaging/review/"})
    assert response.status_code == 302
    assert response["Location"] == f"/imaging/review/#study-export-{study.pk}"
    export = StudyExport.objects.get()
    assert not export.is_anonymized  # the checkbox was left off by a member of the care team

    download = client.get(f"/imaging/exports/{export.pk}/download/")
    body = b"".join(download.streaming_content)

    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert "attachment" in download["Content-Disposition"]
    assert "DICOMDIR" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert AuditEvent.objects.filter(
        actor_user_id=clinician.pk,
        action=AuditEvent.Action.EXPORT,
        outcome=AuditEvent.Outcome.ALLOWED,
        detail__download=export.pk,
    ).exists()
    for other in (other_clinician, coordinator):
        assert (
            logged_in_client(other).get(f"/imaging/exports/{export.pk}/download/").status_code
            == 404
        )
    assert (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.EXPORT, outcome=AuditEvent.Outcome.DENIED
        ).count()
        == 2
    )


def test_export_block_shows_forced_anonymization_and_the_download_link(
    study: Study, coordinator: User, clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    client: Client = logged_in_client(coordinator)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/imaging/studies/{study.pk}/export/", {})
    export = StudyExport.objects.get()

    block = client.get(f"/imaging/studies/{study.pk}/export/block/").content.decode()
    page = logged_in_client(clinician).get(f"/imaging/studies/{study.pk}/export/")

    assert "not in this patient" in block
    assert "disabled" in block
    assert f"/imaging/exports/{export.pk}/download/" in block
    assert page.status_code == 200
    assert "not in this patient" not in page.content.decode()
    assert f"/imaging/exports/{export.pk}/download/" not in page.content.decode()


def test_burned_in_annotation_is_warned_about(
    clinic: Organization, clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    ds = ct_series(1, BurnedInAnnotation="YES")[0]
    with django_capture_on_commit_callbacks(execute=True):
        receive_file(
            content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
        )
    study = Study.objects.get()

    block = logged_in_client(clinician).get(f"/imaging/studies/{study.pk}/export/block/")

    assert "burned into the pixels" in block.content.decode()


def test_exports_older_than_a_day_are_removed(
    study: Study, clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    export, _ = _export(study, clinician, True, django_capture_on_commit_callbacks)
    assert default_storage.exists(export.file)

    assert remove_expired_exports(now=timezone.now() + dt.timedelta(hours=23)) == 0
    assert remove_expired_exports(now=timezone.now() + dt.timedelta(hours=25)) == 1

    assert not StudyExport.objects.exists()
    assert not default_storage.exists(export.file)


def test_a_damaged_stored_file_fails_the_export_with_its_reason(
    study: Study, clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    received = ReceivedFile.objects.filter(instance__isnull=False).first()
    with default_storage.open(received.file.name, "wb") as stored:
        stored.write(b"not DICOM any more")
    client = logged_in_client(clinician)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/imaging/studies/{study.pk}/export/", {"anonymized": "on"})
    export = StudyExport.objects.get()
    block = client.get(f"/imaging/studies/{study.pk}/export/block/").content.decode()

    assert export.status == StudyExport.Status.FAILED
    assert "not a DICOM file" in export.error
    assert "not a DICOM file" in block
    assert client.get(f"/imaging/exports/{export.pk}/download/").status_code == 404


def _received_study(clinic: Organization, patient: Patient) -> Study:
    """A two-image CT study of `patient`, as a live server test receives it: in autocommit,
    each file is ingested as it is received."""
    for ds in ct_series(2, patient_id=patient.pin):
        receive_file(
            content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
        )
    return Study.objects.get()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_coordinator_exports_from_the_study_page_in_a_browser(
    browser: Any,  # noqa: F811  (the fixture of tests/browser/conftest.py)
    live_server: Any,
    clinic: Organization,
    coordinator: User,
    patient: Patient,
) -> None:
    study = _received_study(clinic, patient)
    base = live_server.url
    page = log_in(browser.new_page(), base, coordinator.email, PASSWORD)

    page.goto(f"{base}/imaging/studies/{study.pk}/")
    page.click(f"#study-export-{study.pk} summary")
    page.wait_for_selector(f"#study-export-{study.pk} .export-block")
    forced = page.inner_text(f"#study-export-{study.pk} .notice")
    assert page.is_disabled(f"#study-export-{study.pk} input[type=checkbox]")
    page.click(f"#study-export-{study.pk} button[type=submit]")
    link = page.wait_for_selector(f"#study-export-{study.pk} a[href*='/download/']")
    with page.expect_download() as download_info:
        link.click()
    archive = zipfile.ZipFile(download_info.value.path())

    assert "not in this patient" in forced
    assert page.url.endswith(f"/imaging/studies/{study.pk}/#study-export-{study.pk}")
    assert "DICOMDIR" in archive.namelist()
    assert StudyExport.objects.get().is_anonymized


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_download_link_appears_without_reloading_when_the_export_is_ready(
    browser: Any,  # noqa: F811  (the fixture of tests/browser/conftest.py)
    live_server: Any,
    clinic: Organization,
    clinician: User,
    patient: Patient,
) -> None:
    study = _received_study(clinic, patient)
    # Asked for, and waiting for a busy worker: the row as request_export leaves it.
    export = StudyExport.objects.create(study=study, requested_by=clinician, is_anonymized=True)
    base = live_server.url
    page = log_in(browser.new_page(), base, clinician.email, PASSWORD)
    page.goto(f"{base}/imaging/studies/{study.pk}/#study-export-{study.pk}")
    page.wait_for_selector(f"#study-export-{study.pk} [data-pending]")

    build_export(export=StudyExport.objects.get(pk=export.pk))

    page.wait_for_selector(f"#study-export-{study.pk} a[href*='/download/']", timeout=15000)
    assert page.url.endswith(f"#study-export-{study.pk}")  # no reload happened
