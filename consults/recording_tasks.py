"""Celery tasks of session recordings; the work is in consults/services/recording.py, the
composing itself in consults/media/compose.py."""

from __future__ import annotations

from celery import shared_task

from consults.services.recording import finish_abandoned_recordings, finish_recording


@shared_task(acks_late=True)
def compose_recording(recording_id: int) -> None:
    """Queued by the media broker when a recording's files are closed."""
    finish_recording(recording_id=recording_id)


@shared_task
def sweep_recordings() -> None:
    """Beat: recordings whose broker never stopped them, or whose composition was lost."""
    finish_abandoned_recordings()
