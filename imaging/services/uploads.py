"""Resumable browser uploads: batches, files declared, chunks appended at an offset.

The protocol itself (URLs, headers, answers) is described in imaging/upload_views.py. Here:
who may upload (clinicians, for their clinic, optionally for a patient they may change), the
staging file of each upload under settings.IMAGING_UPLOAD_DIR (a local disk: chunks append to
it, which object storage cannot do), and the hand-over of a complete file to the archive
import or, file by file, to `receive_file`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts import access
from accounts.models import Membership, Organization, User
from ehr.models import Patient
from imaging.models import ReceivedFile, Study, UploadBatch, UploadSession
from imaging.services.archives import (
    ImportContext,
    import_archive,
    import_file,
    is_zip,
    set_archive_state,
)

# A chunk is read into memory before it is written: 256 KB is what the page sends (about 7 s
# at 300 kbit/s); a client may send more, up to this.
MAX_CHUNK_BYTES = 8 * 2**20


class UploadError(Exception):
    """A request the protocol refuses; `status` is the HTTP answer, the message says why."""

    status = 400

    def __init__(self, message: Any, **extra: Any) -> None:
        super().__init__(str(message))
        self.message = str(message)
        self.extra = extra


class HandOverFailed(UploadError):
    """The last byte arrived but storing the file failed (storage or database trouble)."""

    status = 503


class OffsetMismatch(UploadError):
    status = 409


class TooLarge(UploadError):
    status = 413


class Expired(UploadError):
    status = 410


def upload_dir() -> Path:
    path = Path(settings.IMAGING_UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_path(session: UploadSession) -> Path:
    return upload_dir() / f"{session.upload_id}.part"


def _expiry() -> dt.timedelta:
    return dt.timedelta(hours=settings.IMAGING_UPLOAD_EXPIRY_HOURS)


def uploading_organizations(user: User) -> list[Organization]:
    """The clinics where `user` is a clinician: only clinicians upload images."""
    ids = access.organization_ids(user, Membership.Role.CLINICIAN)
    return list(Organization.objects.filter(pk__in=ids).order_by("name"))


@transaction.atomic
def start_batch(*, user: User, patient: Patient | None = None) -> UploadBatch:
    """A new batch of files from `user`'s clinic, optionally for a patient they may change."""
    organizations = uploading_organizations(user)
    if not organizations:
        raise PermissionDenied(_("Only clinicians may upload images."))
    organization = organizations[0]
    if patient is not None:
        if not access.can(user, access.CHANGE, patient):
            raise PermissionDenied(_("You may not add images to this patient's record."))
        organization = next(
            (org for org in organizations if org.pk == patient.organization_id), organization
        )
    return UploadBatch.objects.create(created_by=user, organization=organization, patient=patient)


def own_batch(*, user: User, batch_id: int) -> UploadBatch:
    """A batch `user` started (only its uploader adds files to it); otherwise 404."""
    batch = UploadBatch.objects.select_related("patient", "organization").filter(pk=batch_id)
    found = batch.filter(created_by=user).first() if user.is_authenticated else None
    if found is None:
        raise Http404("No such upload")
    return found


def visible_batch(*, user: User, batch_id: int) -> UploadBatch:
    """A batch `user` may follow (its uploader, clinicians of its clinic); otherwise 404."""
    batches = access.scope(user, access.VIEW, UploadBatch.objects.select_related("patient"))
    batch = batches.filter(pk=batch_id).first()
    if batch is None:
        raise Http404("No such upload")
    return batch


def declare_file(
    *, batch: UploadBatch, user: User, name: str, relative_path: str = "", size: int
) -> UploadSession:
    """Announce one file of `size` bytes; its chunks follow (`append_chunk`)."""
    name = (relative_path or name).replace("\\", "/").strip("/")[:500]
    if not name:
        raise UploadError(_("The file has no name."))
    if size <= 0:
        raise UploadError(_("The file is empty."))
    limit = settings.IMAGING_MAX_FILE_BYTES
    if size > limit:
        raise TooLarge(
            _("The file is too large (%(size)d MB); the limit is %(limit)d MB.")
            % {"size": size // 2**20, "limit": limit // 2**20}
        )
    session = UploadSession.objects.create(
        upload_id=uuid.uuid4(), batch=batch, created_by=user, filename=name, size=size
    )
    staging_path(session).touch()
    return session


def session_for(*, user: User, upload_id: str | uuid.UUID) -> UploadSession:
    """The upload if `user` started it; anyone else gets 404 (and cannot append to it)."""
    session = None
    if user.is_authenticated:
        session = (
            UploadSession.objects.select_related("batch__patient", "batch__organization")
            .filter(upload_id=upload_id, created_by=user)
            .first()
        )
    if session is None:
        raise Http404("No such upload")
    return session


def is_expired(session: UploadSession, now: dt.datetime | None = None) -> bool:
    now = now or timezone.now()
    return session.completed_at is None and session.updated_at < now - _expiry()


def append_chunk(*, session: UploadSession, offset: int, chunk: bytes) -> UploadSession:
    """Write `chunk` at `offset`, which must be where the upload stands; the chunk that reaches
    the declared size completes the file. A repeated or out-of-order chunk answers
    `OffsetMismatch` with the current offset, from which the client resumes."""
    if len(chunk) > MAX_CHUNK_BYTES:
        raise TooLarge(_("A chunk may be at most %(limit)d MB.") % {"limit": MAX_CHUNK_BYTES >> 20})
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session.pk)
        if session.completed_at is not None:
            raise OffsetMismatch(_("The upload is already complete."), offset=session.offset)
        if is_expired(session):
            raise Expired(_("The upload expired; send the file again."))
        if offset != session.offset:
            raise OffsetMismatch(
                _("The upload stands at byte %(offset)d.") % {"offset": session.offset},
                offset=session.offset,
            )
        if offset + len(chunk) > session.size:
            raise UploadError(_("The chunk goes beyond the declared size of the file."))
        path = staging_path(session)
        # Written at the offset, not appended: a chunk written before a crash but never
        # counted is simply written again.
        with open(path, "r+b" if path.exists() else "wb") as staging:
            staging.seek(offset)
            staging.write(chunk)
            staging.truncate()
            staging.flush()
            os.fsync(staging.fileno())
        session.offset = offset + len(chunk)
        session.updated_at = timezone.now()
        session.save(update_fields=["offset", "updated_at"])
    if session.offset == session.size:
        complete_upload(session)
        session.refresh_from_db()
    return session


def complete_upload(session: UploadSession) -> None:
    """Hand a fully received file over: a ZIP to the archive import (Celery), anything else
    to `import_file`. Claimed once, so two racing requests cannot both hand it over."""
    claimed = UploadSession.objects.filter(
        pk=session.pk, completed_at__isnull=True, offset=session.size
    ).update(completed_at=timezone.now(), error="")
    if not claimed:
        return
    path = staging_path(session)
    batch = session.batch
    try:
        with open(path, "rb") as staging:
            head = staging.read(132)
            if is_zip(head):
                from imaging.upload_tasks import ingest_archive

                set_archive_state(
                    batch.pk, session.filename, str(session.upload_id), status="waiting"
                )
                transaction.on_commit(lambda: ingest_archive.delay(session.pk))
                return
            source = (
                ReceivedFile.Source.ARCHIVE
                if "/" in session.filename
                else ReceivedFile.Source.UPLOAD
            )
            context = ImportContext(batch=batch, user=session.created_by)
            with transaction.atomic():
                import_file(context, staging, session.filename, source)
                context.flush()
        path.unlink(missing_ok=True)
    except Exception as error:
        # Nothing is lost: the staging file stays, and an empty chunk at offset == size (what
        # the page sends after a 5xx, having asked where it stands) tries the hand-over again.
        UploadSession.objects.filter(pk=session.pk).update(completed_at=None, error=str(error))
        raise HandOverFailed(
            _(
                "The file arrived whole but could not be stored yet (%(reason)s); it is kept and "
                "will be stored when you try again."
            )
            % {"reason": error}
        ) from error


def unpack_uploaded_archive(*, session: UploadSession) -> dict[str, int]:
    """Unpack the uploaded ZIP of `session` into its batch (Celery), keeping the archive's
    line in the batch status up to date; returns the counts of what it held. Safe to run
    twice: the staging file is removed once unpacked, and a second run finds nothing."""
    path = staging_path(session)
    key = str(session.upload_id)
    if not path.exists():
        return {}  # already unpacked (a redelivered task), or removed as abandoned
    set_archive_state(session.batch_id, session.filename, key, status="unpacking")
    uploader = session.created_by
    try:
        # The reasons recorded are read by the uploader: in their language.
        language = getattr(uploader, "language", "") or translation.get_language()
        with translation.override(language or settings.LANGUAGE_CODE):
            counts = import_archive(
                batch=session.batch, path=path, name=session.filename, user=uploader
            )
    except Exception as error:
        set_archive_state(
            session.batch_id, session.filename, key, status="failed", reason=str(error)
        )
        raise
    set_archive_state(session.batch_id, session.filename, key, status="done", **counts)
    path.unlink(missing_ok=True)
    return counts


def upload_state(session: UploadSession) -> dict[str, Any]:
    return {
        "upload_id": str(session.upload_id),
        "name": session.filename,
        "size": session.size,
        "offset": session.offset,
        "is_complete": session.completed_at is not None,
        "is_expired": is_expired(session),
    }


def batch_status(batch: UploadBatch) -> dict[str, Any]:
    """What the progress view shows: uploads, files by status, and what failed and why."""
    sessions = batch.sessions.aggregate(
        declared=Count("id"), complete=Count("id", filter=Q(completed_at__isnull=False))
    )
    files = ReceivedFile.objects.filter(batch=batch)
    counts = dict(files.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    failed = [
        {"name": name, "reason": error}
        for name, error in files.filter(
            status__in=[ReceivedFile.Status.FAILED, ReceivedFile.Status.CONFLICT]
        ).values_list("original_name", "error")[:500]
    ]
    problems = batch.problems or []
    refused = [p for p in problems if p.get("kind") == "refused"]
    skipped = [p for p in problems if p.get("kind") == "skipped"]
    archives = [p for p in problems if p.get("kind") == "archive"]
    pending_archives = [a for a in archives if a.get("status") in ("waiting", "unpacking")]
    studies = Study.objects.filter(series__instances__received_file__batch=batch).distinct().count()
    # Done with what arrived: an upload still in progress (or abandoned) is the sender's to
    # follow, so it does not keep this from being done.
    is_done = not pending_archives and not counts.get(ReceivedFile.Status.RECEIVED)
    return {
        "batch": batch.pk,
        "uploads": sessions,
        "counts": counts,
        "failed": failed
        + [{"name": p["name"], "reason": p["reason"]} for p in refused]
        + [
            {"name": a["name"], "reason": a.get("reason", "")}
            for a in archives
            if a.get("status") == "failed"
        ],
        "skipped": [{"name": p["name"], "reason": p["reason"]} for p in skipped],
        "archives": [
            {key: a[key] for key in ("name", "status", "dicomdir", "files") if key in a}
            for a in archives
        ],
        "studies": studies,
        "is_done": is_done,
    }


def remove_abandoned_uploads(now: dt.datetime | None = None) -> int:
    """Remove the staging files of uploads nobody touched for a day, and leftovers of a crash.
    The sessions stay, marked expired, so a late client is told to send the file again."""
    now = now or timezone.now()
    cutoff = now - _expiry()
    removed = 0
    abandoned = UploadSession.objects.filter(
        updated_at__lt=cutoff, completed_at__isnull=True
    ).exclude(error="abandoned")
    for session in abandoned.iterator():
        path = staging_path(session)
        if path.exists():
            path.unlink()
            removed += 1
        UploadSession.objects.filter(pk=session.pk).update(error="abandoned")
    # Files no session knows (a crash while unpacking): by their age on disk.
    for path in upload_dir().iterdir():
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
        if modified >= cutoff:
            continue
        if (
            path.suffix == ".part"
            and UploadSession.objects.filter(
                upload_id=path.stem, completed_at__isnull=True, updated_at__gte=cutoff
            ).exists()
        ):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed
