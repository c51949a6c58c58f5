"""Celery tasks of browser uploads: unpacking an uploaded archive, and removing the staging
files of abandoned uploads (beat). They take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import translation

from imaging.models import UploadSession


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def ingest_archive(upload_session_id: int) -> dict[str, int]:
    """Unpack the uploaded ZIP of this session into its batch (services/archives.py)."""
    from imaging.services.archives import import_archive, set_archive_state
    from imaging.services.uploads import staging_path

    session = UploadSession.objects.select_related("batch", "created_by").get(pk=upload_session_id)
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


@shared_task
def remove_abandoned_uploads() -> int:
    """Beat: staging files of uploads untouched for a day are removed."""
    from imaging.services.uploads import remove_abandoned_uploads as remove

    return remove()
