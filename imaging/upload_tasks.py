"""Celery tasks of browser uploads: unpacking an uploaded archive, and removing the staging
files of abandoned uploads (beat). They take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from imaging.models import UploadSession


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def ingest_archive(upload_session_id: int) -> dict[str, int]:
    """Unpack the uploaded ZIP of this session into its batch (services/uploads.py)."""
    from imaging.services.uploads import unpack_uploaded_archive

    session = UploadSession.objects.select_related("batch", "created_by").get(pk=upload_session_id)
    return unpack_uploaded_archive(session=session)


@shared_task
def remove_abandoned_uploads() -> int:
    """Beat: staging files of uploads untouched for a day are removed."""
    from imaging.services.uploads import remove_abandoned_uploads as remove

    return remove()
