"""Archives, folders and single files from the browser: what each file is, and where it goes.

Every file is recognised by its bytes, never trusted by its name:

- DICOM ("DICM" at offset 128, or a name DICOM media use: no extension, .dcm, .dic, .ima)
  goes to `receive_file` and the ingest decides (a damaged one fails there with its reason);
- a JPEG or PNG photo or scan is wrapped as DICOM Secondary Capture for the batch's chosen
  patient (refused when no patient was chosen: we never guess whose photo it is);
- a PDF or an MP4 video is kept as a document of the chosen patient's record;
- anything else is listed as skipped (a CD's viewer program, autorun.inf...).

A ZIP is unpacked safely (`import_archive`): entries that climb out of the archive (../, an
absolute path, a drive letter), symbolic links, encrypted entries, archives nested deeper than
one level and archive bombs (too big in total, too many entries, a big entry compressed more
than 100:1) are refused, each recorded in `UploadBatch.problems` with its reason, while the
rest proceeds. When the archive holds a DICOMDIR, the files it references are read through it
(pydicom's FileSet; source DICOMDIR). Knows nothing of HTTP.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from accounts.models import User
from imaging.dicom.wrap import NotWrappable, PatientModule, WrapTarget, image_kind, wrap_image
from imaging.models import ReceivedFile, UploadBatch
from imaging.services.ingest import queue_ingest_of, receive_file

MAX_ENTRIES = 20_000
MAX_RATIO = 100
# Small entries may compress very well (a blank scout image); only big ones are judged.
RATIO_CHECKED_ABOVE = 1 << 20
QUEUE_EVERY = 100
# A CD's viewer program can hold thousands of files: list the first skipped ones only.
MAX_SKIPPED_LISTED = 200
COPY_CHUNK = 1 << 20

DICOM_NAME = re.compile(r"(^|\.)(dcm|dic|dicom|ima)$|^[^.]*$", re.IGNORECASE)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# Reasons shown to the uploader, file by file.
REASON_TRAVERSAL = _("path traversal refused: the entry would be written outside the archive")
REASON_SYMLINK = _("symbolic link refused")
REASON_ENCRYPTED = _("encrypted entry refused (the archive has a password)")
REASON_NESTED = _("nested archive refused: only one level of archives inside archives is opened")
REASON_RATIO = _("archive bomb refused: the entry is compressed more than %(ratio)d to 1")
REASON_TOTAL = _("archive bomb refused: it would unpack to %(size)s MB; the limit is %(limit)s MB")
REASON_ENTRIES = _("archive refused: %(count)d entries; the limit is %(limit)d")
REASON_NOT_ZIP = _("not a readable ZIP archive")
REASON_DAMAGED = _("the entry is damaged and cannot be unpacked: %(error)s")
REASON_NO_PATIENT_PHOTO = _(
    "a photo or scan can only be added for a chosen patient: choose the patient and upload it again"
)
REASON_NO_PATIENT_DOCUMENT = _(
    "a PDF or video is kept in a patient's record: choose the patient and upload it again"
)
REASON_SKIPPED = _("skipped: neither DICOM nor a photo, scan, PDF or video")
REASON_NOT_IMAGE = _("the photo cannot be read: %(error)s")


@dataclass
class ImportContext:
    """One run of imports into a batch: what to queue, and what to tell the uploader."""

    batch: UploadBatch
    user: User | None
    received_ids: list[int] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    unpacked_bytes: int = 0
    entries: int = 0

    def refuse(self, name: str, reason: Any, kind: str = "refused") -> None:
        if kind == "skipped":
            self.skipped += 1
            if self.skipped > MAX_SKIPPED_LISTED:
                return
        self.problems.append({"kind": kind, "name": name[:500], "reason": str(reason)})

    def flush(self) -> None:
        """Queue the ingest of what was received so far and save the problems noted."""
        queue_ingest_of(self.received_ids)
        self.received_ids = []
        if self.problems:
            add_problems(self.batch.pk, self.problems)
            self.problems = []


def add_problems(batch_id: int, items: list[dict[str, Any]]) -> None:
    with transaction.atomic():
        batch = UploadBatch.objects.select_for_update().get(pk=batch_id)
        batch.problems = [*batch.problems, *items]
        batch.save(update_fields=["problems"])


def set_archive_state(batch_id: int, name: str, key: str, **state: Any) -> None:
    """Create or update the line of one archive (or folder) in the batch's problems list."""
    with transaction.atomic():
        batch = UploadBatch.objects.select_for_update().get(pk=batch_id)
        problems = list(batch.problems)
        for item in problems:
            if item.get("kind") == "archive" and item.get("key") == key:
                item.update(state)
                break
        else:
            problems.append({"kind": "archive", "key": key, "name": name, **state})
        batch.problems = problems
        batch.save(update_fields=["problems"])


# --- one file ------------------------------------------------------------------------------


def _head(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    head = stream.read(132)
    stream.seek(0)
    return head


def _is_mp4(head: bytes) -> bool:
    return head[4:8] == b"ftyp"


def _patient_module(batch: UploadBatch) -> PatientModule:
    patient = batch.patient
    latin = "^".join(p for p in (patient.family_name_latin, patient.given_name_latin) if p)
    name = latin or "^".join(p for p in (patient.family_name, patient.given_name) if p)
    sex = {"female": "F", "male": "M", "other": "O"}.get(patient.sex, "")
    return PatientModule(
        patient_id=patient.pin or "", patient_name=name, birth_date=patient.birth_date, sex=sex
    )


def _wrap_target(batch: UploadBatch, sha256: str) -> WrapTarget:
    # One study and one series per batch; the same photo sent twice gets the same UID, so the
    # ingest sees a duplicate rather than a second copy.
    root = f"telemed upload batch {batch.pk}"
    number = ReceivedFile.objects.filter(batch=batch, source=ReceivedFile.Source.WRAPPED).count()
    return WrapTarget(
        study_uid=generate_uid(entropy_srcs=[root, "study"]),
        series_uid=generate_uid(entropy_srcs=[root, "series"]),
        sop_instance_uid=generate_uid(entropy_srcs=[root, sha256]),
        instance_number=number + 1,
    )


def _wrap(context: ImportContext, stream: IO[bytes], name: str) -> None:
    import hashlib

    batch = context.batch
    if batch.patient is None:
        context.refuse(name, REASON_NO_PATIENT_PHOTO)
        return
    content = stream.read()
    try:
        wrapped = wrap_image(
            content,
            patient=_patient_module(batch),
            target=_wrap_target(batch, hashlib.sha256(content).hexdigest()),
        )
    except NotWrappable as error:
        context.refuse(name, REASON_NOT_IMAGE % {"error": error})
        return
    received = receive_file(
        content=wrapped,
        source=ReceivedFile.Source.WRAPPED,
        organization=batch.organization,
        received_by=context.user,
        batch=batch,
        original_name=name,
        queue_ingest=False,
    )
    context.received_ids.append(received.pk)


def _keep_document(context: ImportContext, stream: IO[bytes], name: str, source: str) -> None:
    from ehr.models import Document
    from ehr.services.record import attach_document

    batch = context.batch
    if batch.patient is None:
        context.refuse(name, REASON_NO_PATIENT_DOCUMENT)
        return
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    upload = UploadedFile(file=stream, name=os.path.basename(name) or "document", size=size)
    is_video = _is_mp4(_head(stream))
    try:
        attach_document(
            patient=batch.patient,
            author=context.user,
            title=os.path.basename(name)[:200],
            kind=Document.Kind.IMAGE if is_video else Document.Kind.OTHER,
            upload=upload,
        )
    except ValidationError as error:
        context.refuse(name, " ".join(error.messages))
        return
    except PermissionDenied:
        context.refuse(name, _("you may not add documents to this patient's record"))
        return
    stream.seek(0)
    received = receive_file(
        content=stream,
        source=source,
        organization=batch.organization,
        received_by=context.user,
        batch=batch,
        original_name=name,
        queue_ingest=False,
    )
    received.status = ReceivedFile.Status.DOCUMENT
    received.processed_at = timezone.now()
    received.save(update_fields=["status", "processed_at"])


def import_file(context: ImportContext, stream: IO[bytes], name: str, source: str) -> None:
    """Send one file where it belongs (see the module docstring); never raises for bad input."""
    from ehr.services.record import sniff_document_type

    head = _head(stream)
    basename = name.replace("\\", "/").rsplit("/", 1)[-1]
    if basename.upper() == "DICOMDIR":
        return  # the index of the media, read by import_archive; not an image itself
    if head[128:132] == b"DICM":
        kind = "dicom"
    elif image_kind(head):
        kind = "photo"
    elif _is_mp4(head) or sniff_document_type(head[:16]) == "application/pdf":
        kind = "document"
    elif DICOM_NAME.search(basename):
        kind = "dicom"  # DICOM media often name files IM000001: let the ingest decide
    else:
        context.refuse(name, REASON_SKIPPED, kind="skipped")
        return
    if kind == "photo":
        _wrap(context, stream, name)
    elif kind == "document":
        _keep_document(context, stream, name, source)
    else:
        received = receive_file(
            content=stream,
            source=source,
            organization=context.batch.organization,
            received_by=context.user,
            batch=context.batch,
            original_name=name,
            queue_ingest=False,
        )
        context.received_ids.append(received.pk)
    if len(context.received_ids) >= QUEUE_EVERY:
        context.flush()


# --- archives --------------------------------------------------------------------------------


def is_zip(head: bytes) -> bool:
    return head[:4] in ZIP_MAGIC


def _entry_refusal(info: zipfile.ZipInfo) -> Any:
    name = info.filename.replace("\\", "/")
    if (
        "\0" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name)
        or ".." in name.split("/")
    ):
        return REASON_TRAVERSAL
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return REASON_SYMLINK
    if info.flag_bits & 0x1:
        return REASON_ENCRYPTED
    if info.file_size > RATIO_CHECKED_ABOVE and (
        info.compress_size == 0 or info.file_size / info.compress_size > MAX_RATIO
    ):
        return REASON_RATIO % {"ratio": MAX_RATIO}
    return None


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.0f}"


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> int:
    """Copy one entry out, never more bytes than its header declared (zipfile stops there and
    then checks the CRC, so a lying header fails rather than filling the disk)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(target, "wb") as output:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            output.write(chunk)
    return written


def _unpack(context: ImportContext, path: Path, destination: Path, label: str, depth: int) -> None:
    """Extract the safe entries of the ZIP at `path` into `destination`, refusing the rest."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        context.refuse(label, REASON_NOT_ZIP)
        return
    limit = settings.IMAGING_MAX_ARCHIVE_BYTES
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if context.entries + len(infos) > MAX_ENTRIES:
            context.refuse(label, REASON_ENTRIES % {"count": len(infos), "limit": MAX_ENTRIES})
            return
        declared = sum(info.file_size for info in infos)
        if context.unpacked_bytes + declared > limit:
            context.refuse(
                label, REASON_TOTAL % {"size": _megabytes(declared), "limit": _megabytes(limit)}
            )
            return
        context.entries += len(infos)
        for info in infos:
            name = f"{label}/{info.filename}"
            reason = _entry_refusal(info)
            if reason is not None:
                context.refuse(name, reason)
                continue
            target = destination / info.filename.replace("\\", "/")
            if not target.resolve().is_relative_to(destination.resolve()):
                context.refuse(name, REASON_TRAVERSAL)
                continue
            try:
                context.unpacked_bytes += _extract(archive, info, target)
            except (
                zipfile.BadZipFile,
                zlib.error,
                NotImplementedError,
                EOFError,
                # "a" and "a/b" in one archive: a file where a folder must be, or the reverse
                IsADirectoryError,
                NotADirectoryError,
                FileExistsError,
            ) as error:
                target.unlink(missing_ok=True)
                context.refuse(name, REASON_DAMAGED % {"error": error})
                continue
            with open(target, "rb") as extracted:
                is_nested = is_zip(extracted.read(4))
            if is_nested:
                if depth == 0:
                    inner = target.with_name(target.name + ".unpacked")
                    _unpack(context, target, inner, name, depth + 1)
                else:
                    context.refuse(name, REASON_NESTED)
                target.unlink()


def _files_referenced_by(dicomdir: Path, context: ImportContext, label: str) -> list[Path]:
    try:
        file_set = FileSet(dicomdir)
        return [Path(instance.path) for instance in file_set]
    except Exception as error:  # a damaged DICOMDIR: its files are still read one by one
        context.refuse(label, _("the DICOMDIR cannot be read (%(error)s)") % {"error": error})
        return []


def import_tree(context: ImportContext, root: Path, label: str) -> dict[str, int]:
    """Import every file under `root` (an unpacked archive): through its DICOMDIR(s) first,
    then whatever else is there. Returns counts by route."""
    referenced: list[Path] = []
    for dicomdir in sorted(p for p in root.rglob("*") if p.name.upper() == "DICOMDIR"):
        relative = dicomdir.relative_to(root).as_posix()
        referenced += _files_referenced_by(dicomdir, context, f"{label}/{relative}")
    seen: set[Path] = set()
    counts = {"dicomdir": 0, "files": 0}
    for path in referenced:
        resolved = path.resolve()
        if resolved in seen or not resolved.is_relative_to(root.resolve()):
            continue
        seen.add(resolved)
        with open(resolved, "rb") as stream:
            import_file(
                context,
                stream,
                f"{label}/{resolved.relative_to(root.resolve())}",
                ReceivedFile.Source.DICOMDIR,
            )
        counts["dicomdir"] += 1
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.resolve() in seen:
            continue
        with open(path, "rb") as stream:
            import_file(
                context,
                stream,
                f"{label}/{path.relative_to(root).as_posix()}",
                ReceivedFile.Source.ARCHIVE,
            )
        counts["files"] += 1
    return counts


def import_archive(
    *, batch: UploadBatch, path: Path, name: str, user: User | None
) -> dict[str, int]:
    """Unpack the ZIP at `path` safely and import what it holds into `batch` (see the module
    docstring). Refusals are recorded in `batch.problems`; the ingest is queued in batches."""
    context = ImportContext(batch=batch, user=user)
    work_dir = Path(settings.IMAGING_UPLOAD_DIR)
    work_dir.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix="unpack-", dir=work_dir))
    try:
        _unpack(context, path, unpacked, name, depth=0)
        counts = import_tree(context, unpacked, name)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        context.flush()
    if context.skipped > MAX_SKIPPED_LISTED:
        add_problems(
            batch.pk,
            [
                {
                    "kind": "skipped",
                    "name": name,
                    "reason": str(
                        _("and %(count)d more files skipped")
                        % {"count": context.skipped - MAX_SKIPPED_LISTED}
                    ),
                }
            ],
        )
    return {**counts, "skipped": context.skipped}
