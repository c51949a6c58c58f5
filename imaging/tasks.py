"""Celery tasks of the imaging pipeline. They take ids, call one service, and are safe to run
twice (acks_late: a worker killed mid-task has its task redelivered)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from imaging.models import ReceivedFile


# OSError: storage trouble; OperationalError: the database is busy or restarting.
@shared_task(autoretry_for=(OSError, OperationalError), retry_backoff=True, max_retries=8)
def ingest_received_files(received_file_ids: list[int]) -> int:
    """Index these received files (services/ingest.py); returns how many were waiting."""
    from imaging.services import ingest

    return ingest.ingest_received_files(received_file_ids=received_file_ids)


@shared_task
def ingest_waiting_files() -> int:
    """Sweep (beat): files still waiting a while after they arrived — their task was lost with
    a broker restart, say — are ingested now."""
    import datetime as dt

    from django.utils import timezone

    before = timezone.now() - dt.timedelta(minutes=2)
    ids = list(
        ReceivedFile.objects.filter(
            status=ReceivedFile.Status.RECEIVED, received_at__lt=before
        ).values_list("pk", flat=True)[:1000]
    )
    if ids:
        ingest_received_files.delay(ids)
    return len(ids)


@shared_task
def render_series(series_id: int) -> None:
    """Thumbnail, preview and (for multi-frame) video of a series (services/renditions.py)."""
    from imaging.services import renditions

    renditions.render_series(series_id=series_id)
