"""Celery tasks of study exports (routed to the "media" queue): building the ZIP, and the
daily clean-up. They take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from imaging.models import StudyExport


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def build_study_export(export_id: int) -> str:
    """Build the ZIP of one export; returns its status."""
    from imaging.services.exports import build_export

    export = StudyExport.objects.select_related("study").filter(pk=export_id).first()
    if export is None:
        return "gone"  # removed meanwhile (expired): nothing to do
    return build_export(export=export).status


@shared_task
def remove_expired_exports() -> int:
    """Beat: exports are kept for a day, then their ZIP and row are removed."""
    from imaging.services import exports

    return exports.remove_expired_exports()
