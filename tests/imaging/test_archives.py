"""Archives, folders, photos and documents: unpacked safely, each file where it belongs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.fileset import FileSet

from accounts.models import User
from ehr.models import Document, Patient
from imaging.models import ReceivedFile, Study, UploadBatch
from imaging.services.archives import ImportContext, import_archive, import_file
from imaging.services.uploads import start_batch
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes

pytestmark = pytest.mark.django_db


def make_zip(path: Path, entries: dict[str, bytes], **infos: zipfile.ZipInfo) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        for info in infos.values():
            archive.writestr(info, b"target")
    return path


def run_import(batch: UploadBatch, path: Path, user: User, capture: Any) -> dict[str, int]:
    with capture(execute=True):
        return import_archive(batch=batch, path=path, name=path.name, user=user)


def problems(batch: UploadBatch) -> dict[str, str]:
    batch.refresh_from_db()
    return {item["name"]: item["reason"] for item in batch.problems}


def jpeg_photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (180, 40, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_zip_with_dicomdir_is_read_through_the_dicomdir(
    clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    file_set = FileSet()
    for ds in ct_series(3, accession_number="CD1"):
        file_set.add(ds)
    media = tmp_path / "media"
    file_set.write(media)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as packed:
        for path in sorted(media.rglob("*")):
            if path.is_file():
                packed.write(path, path.relative_to(media).as_posix())
    batch = start_batch(user=clinician)

    counts = run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    assert counts["dicomdir"] == 3
    received = ReceivedFile.objects.filter(batch=batch)
    assert set(received.values_list("source", "status")) == {("dicomdir", "ingested")}
    assert Study.objects.get().number_of_instances == 3
    assert problems(batch) == {}


def test_plain_zip_of_dicom_files_is_indexed(
    clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    slices = ct_series(4)
    archive = make_zip(
        tmp_path / "study.zip",
        {f"series/IM{n:04d}": dicom_bytes(ds) for n, ds in enumerate(slices)}
        | {"readme.txt": b"burned by the hospital"},
    )
    batch = start_batch(user=clinician)

    counts = run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    assert counts == {"dicomdir": 0, "files": 5, "skipped": 1}
    assert set(ReceivedFile.objects.values_list("source", "status")) == {("archive", "ingested")}
    assert Study.objects.get().number_of_instances == 4
    assert "neither DICOM" in problems(batch)["study.zip/readme.txt"]


def test_path_traversal_entries_are_refused_and_the_rest_ingested(
    clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    link = zipfile.ZipInfo("images/link.dcm")
    link.external_attr = (0o120777 << 16) | 0x20
    archive = make_zip(
        tmp_path / "evil.zip",
        {
            "../../etc/cron.d/evil.dcm": dicom_bytes(ct_dataset()),
            "/abs/path.dcm": dicom_bytes(ct_dataset()),
            "C:/windows/x.dcm": dicom_bytes(ct_dataset()),
            "images/good.dcm": dicom_bytes(ct_dataset(accession_number="GOOD")),
        },
        link=link,
    )
    batch = start_batch(user=clinician)

    run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    refused = problems(batch)
    for name in ("../../etc/cron.d/evil.dcm", "/abs/path.dcm", "C:/windows/x.dcm"):
        assert "path traversal refused" in refused[f"evil.zip/{name}"]
    assert "symbolic link refused" in refused["evil.zip/images/link.dcm"]
    assert Study.objects.get().accession_number == "GOOD"
    assert not (tmp_path.parent / "etc").exists()


def test_archive_bomb_is_refused(
    clinician: User, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    archive = make_zip(
        tmp_path / "bomb.zip",
        {"zeros.dcm": b"\0" * (20 * 2**20), "slice.dcm": dicom_bytes(ct_dataset())},
    )
    batch = start_batch(user=clinician)

    run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    assert "archive bomb refused" in problems(batch)["bomb.zip/zeros.dcm"]
    assert ReceivedFile.objects.filter(status="ingested").count() == 1

    settings.IMAGING_MAX_ARCHIVE_BYTES = 1000
    too_big = make_zip(tmp_path / "big.zip", {"slice.dcm": dicom_bytes(ct_dataset())})
    other = start_batch(user=clinician)
    run_import(other, too_big, clinician, django_capture_on_commit_callbacks)

    assert "archive bomb refused" in problems(other)["big.zip"]
    assert not ReceivedFile.objects.filter(batch=other).exists()


def test_archive_in_archive_is_opened_once_not_deeper(
    clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    deepest = make_zip(tmp_path / "deepest.zip", {"a.dcm": dicom_bytes(ct_dataset())})
    inner = make_zip(
        tmp_path / "inner.zip",
        {
            "b.dcm": dicom_bytes(ct_dataset(accession_number="INNER")),
            "deeper.zip": deepest.read_bytes(),
        },
    )
    outer = make_zip(tmp_path / "outer.zip", {"inner.zip": inner.read_bytes()})
    batch = start_batch(user=clinician)

    run_import(batch, outer, clinician, django_capture_on_commit_callbacks)

    assert Study.objects.get().accession_number == "INNER"
    assert "nested archive refused" in problems(batch)["outer.zip/inner.zip/deeper.zip"]


def test_encrypted_entry_is_refused(
    clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    archive = make_zip(tmp_path / "locked.zip", {"a.dcm": dicom_bytes(ct_dataset())})
    raw = bytearray(archive.read_bytes())
    # Set the "encrypted" bit (general purpose flag bit 0) in the local and central headers.
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = raw.find(signature)
        raw[start + flag_at] |= 0x01
    archive.write_bytes(bytes(raw))
    batch = start_batch(user=clinician)

    run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    assert "encrypted entry refused" in problems(batch)["locked.zip/a.dcm"]
    assert not ReceivedFile.objects.exists()


def test_non_dicom_file_named_dcm_fails_with_reason(
    clinician: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    archive = make_zip(tmp_path / "x.zip", {"scan.dcm": b"GIF89a pretending"})
    batch = start_batch(user=clinician)

    run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    received = ReceivedFile.objects.get()
    assert received.status == ReceivedFile.Status.FAILED
    assert received.error == "not a DICOM file (no DICM preamble)"
    assert received.original_name == "x.zip/scan.dcm"


def test_jpeg_photo_is_wrapped_for_the_chosen_patient_and_indexed_under_them(
    clinician: User, patient: Patient, django_capture_on_commit_callbacks: Any
) -> None:
    batch = start_batch(user=clinician, patient=patient)
    photo = jpeg_photo()

    with django_capture_on_commit_callbacks(execute=True):
        context = ImportContext(batch=batch, user=clinician)
        import_file(context, io.BytesIO(photo), "wound.jpg", ReceivedFile.Source.UPLOAD)
        context.flush()

    received = ReceivedFile.objects.get()
    assert (received.source, received.status) == ("wrapped", "ingested")
    study = Study.objects.get()
    assert study.patient == patient
    assert study.dicom_patient_id == patient.pin
    with received.file.open("rb") as stored:
        ds = dcmread(stored)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # JPEG baseline, as sent
    assert ds.pixel_array.shape == (60, 80, 3)


def test_photo_without_a_chosen_patient_is_refused_with_reason(clinician: User) -> None:
    batch = start_batch(user=clinician)

    context = ImportContext(batch=batch, user=clinician)
    import_file(context, io.BytesIO(jpeg_photo()), "wound.jpg", ReceivedFile.Source.UPLOAD)
    context.flush()

    assert "choose the patient" in problems(batch)["wound.jpg"]
    assert not ReceivedFile.objects.exists()


def test_pdf_is_kept_as_a_document_of_the_chosen_patient(
    clinician: User, patient: Patient, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    pdf = b"%PDF-1.4\n% discharge summary\n%%EOF\n"
    archive = make_zip(tmp_path / "records.zip", {"discharge.pdf": pdf})
    batch = start_batch(user=clinician, patient=patient)

    run_import(batch, archive, clinician, django_capture_on_commit_callbacks)

    document = Document.objects.get()
    assert document.patient == patient
    assert document.content_type == "application/pdf"
    with document.file.open("rb") as stored:
        assert stored.read() == pdf
    assert ReceivedFile.objects.get().status == ReceivedFile.Status.DOCUMENT


def test_mp4_video_is_kept_as_a_document(
    clinician: User, patient: Patient, django_capture_on_commit_callbacks: Any
) -> None:
    mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
    batch = start_batch(user=clinician, patient=patient)

    context = ImportContext(batch=batch, user=clinician)
    import_file(context, io.BytesIO(mp4), "echo.mp4", ReceivedFile.Source.UPLOAD)
    context.flush()

    assert Document.objects.get().content_type == "video/mp4"


def test_png_scan_is_wrapped_uncompressed_with_its_pixels(
    clinician: User, patient: Patient, django_capture_on_commit_callbacks: Any
) -> None:
    pixels = np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    batch = start_batch(user=clinician, patient=patient)

    with django_capture_on_commit_callbacks(execute=True):
        context = ImportContext(batch=batch, user=clinician)
        import_file(context, io.BytesIO(buffer.getvalue()), "film.png", "upload")
        context.flush()

    with ReceivedFile.objects.get(status="ingested").file.open("rb") as stored:
        ds = dcmread(stored)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # explicit VR little endian
    assert (ds.PhotometricInterpretation, ds.BitsStored) == ("MONOCHROME2", 16)
    assert (ds.pixel_array == pixels).all()
    assert str(ds.PatientName) == f"{patient.family_name_latin}^{patient.given_name_latin}"


def test_phone_photo_turned_by_exif_is_stored_upright(
    clinician: User, patient: Patient, django_capture_on_commit_callbacks: Any
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (20, 120, 200)).save(buffer, format="JPEG", exif=exif)
    batch = start_batch(user=clinician, patient=patient)

    with django_capture_on_commit_callbacks(execute=True):
        context = ImportContext(batch=batch, user=clinician)
        import_file(context, io.BytesIO(buffer.getvalue()), "IMG_0001.JPG", "upload")
        context.flush()

    with ReceivedFile.objects.get(status="ingested").file.open("rb") as stored:
        ds = dcmread(stored)
    assert (ds.Rows, ds.Columns) == (80, 60)
