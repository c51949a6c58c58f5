"""Export of a study as a ZIP with a DICOMDIR (for a CD or a USB stick).

A study leaves the care team anonymized: whoever may not export it with identities (the
policy "export_identified" on imaging.Study) gets it de-identified by DICOM PS3.15 Annex E
whatever they asked for. The ZIP is built by Celery (imaging/export_tasks.py) into the
default storage, served only to the person who asked for it, and removed after a day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
from typing import IO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from imaging.dicom.anonymize import Anonymizer
from imaging.dicom.dicomdir import StudyZipWriter
from imaging.models import Instance, Study, StudyExport
from imaging.policies import EXPORT_IDENTIFIED
from imaging.services.files import load_dataset

logger = logging.getLogger(__name__)

EXPORT_LIFETIME = dt.timedelta(days=1)
FORCED_ANONYMIZATION_REASON = _(
    "You are not in this patient's care team, so the study is exported anonymized "
    "(names, IDs and dates removed, DICOM PS3.15 Basic Profile)."
)
NOTHING_TO_EXPORT = _("The study has no images yet: nothing to export.")
BURNED_IN_WARNING = _(
    "Some images of this study have text burned into the pixels (BurnedInAnnotation). "
    "Anonymization cannot remove it: check the images before sharing the export."
)


def may_export_identified(user: User, study: Study) -> bool:
    return access.can(user, EXPORT_IDENTIFIED, study)


def has_burned_in_annotation(study: Study) -> bool:
    """Whether an instance says its pixels carry burned-in text (read from the index)."""
    # Read in Python: the tag, all digits, would be taken for an array index by the ORM's
    # JSON lookups.
    metadata = Instance.objects.filter(series__study=study).values_list("metadata", flat=True)
    return any(
        "YES" in [str(v).upper() for v in (item.get("00280301") or {}).get("Value", [])]
        for item in metadata.iterator(chunk_size=500)
    )


def request_export(*, study: Study, user: User, anonymized: bool) -> StudyExport:
    """Ask for a ZIP of `study`; anonymized when asked, or when the user may not export it
    with identities. Audited; the ZIP is built by Celery after commit."""
    if not access.can(user, access.VIEW, study):
        raise PermissionDenied
    is_anonymized = anonymized or not may_export_identified(user, study)
    with transaction.atomic():
        export = StudyExport.objects.create(
            study=study, requested_by=user, is_anonymized=is_anonymized
        )
        record_event(
            actor=user,
            action=AuditEvent.Action.EXPORT,
            target=study,
            patient_id=study.patient_id,
            region=study.organization.region,
            detail={
                "export": export.pk,
                "anonymized": "yes" if is_anonymized else "no",
                "asked_anonymized": "yes" if anonymized else "no",
            },
        )
        transaction.on_commit(lambda: _queue_build(export.pk))
    return export


def _queue_build(export_id: int) -> None:
    from imaging.export_tasks import build_study_export

    build_study_export.delay(export_id)


def exports_of(*, study: Study, user: User, limit: int = 5) -> QuerySet[StudyExport]:
    """The user's own recent exports of this study."""
    return StudyExport.objects.filter(study=study, requested_by=user)[:limit]


def _salt(export: StudyExport) -> bytes:
    # One secret per export: the same UIDs map alike within it, differently in another.
    key = f"{settings.SECRET_KEY}:imaging-export:{export.pk}:{export.created_at.isoformat()}"
    return hashlib.sha256(key.encode()).digest()


def _readme(export: StudyExport, instances: int) -> str:
    lines = [
        "Telemed study export",
        f"Instances: {instances}",
        "Open the DICOMDIR with any DICOM viewer; copy all files to the root of a CD or a USB",
        "stick as they are.",
    ]
    if export.is_anonymized:
        lines += [
            "",
            "De-identified by DICOM PS3.15 Annex E, Basic Application Level Confidentiality",
            "Profile (113100): names, IDs, dates and institution data removed or replaced,",
            "private attributes removed, UIDs replaced consistently within this export.",
        ]
        if has_burned_in_annotation(export.study):
            lines.append("WARNING: some images have text burned into the pixels; it remains.")
    return "\n".join(lines) + "\n"


def _fail(export: StudyExport, reason: str) -> StudyExport:
    export.status, export.error = StudyExport.Status.FAILED, reason[:2000]
    export.completed_at = timezone.now()
    export.save(update_fields=["status", "error", "completed_at"])
    return export


def build_export(*, export: StudyExport) -> StudyExport:
    """Make the ZIP of one export (Celery). Safe to run twice: a finished export is left as
    it is; one interrupted midway is built again from the start."""
    if export.status != StudyExport.Status.PENDING:
        return export
    instances = (
        Instance.objects.filter(series__study=export.study)
        .select_related("received_file")
        .order_by("series__series_number", "series_id", "instance_number", "id")
    )
    if not instances.exists():
        return _fail(export, str(NOTHING_TO_EXPORT))
    anonymizer = Anonymizer(salt=_salt(export), pseudonym_number=export.pk)
    try:
        with (
            StudyZipWriter(readme=_readme(export, instances.count())) as writer,
            tempfile.TemporaryFile() as packed,
        ):
            for instance in instances.iterator(chunk_size=200):
                dataset = load_dataset(instance)
                if export.is_anonymized:
                    anonymizer.anonymize(dataset)
                writer.add(dataset)
                del dataset
            writer.finish(packed)
            size = packed.tell()
            packed.seek(0)
            name = default_storage.save(
                f"imaging/exports/{export.pk}/study-{export.study_id}.zip", File(packed)
            )
    except OSError:
        raise  # storage trouble: the task retries
    except Exception as error:  # a damaged file, a dataset pydicom cannot write
        logger.exception("export %s failed", export.pk)
        return _fail(export, str(error))
    export.file, export.size = name, size
    export.status, export.completed_at = StudyExport.Status.READY, timezone.now()
    export.save(update_fields=["file", "size", "status", "completed_at"])
    return export


def export_for_download(*, user: User, export_id: int) -> StudyExport:
    """A ready export, for the person who asked for it and still may read the study; anyone
    else gets 404. Both outcomes are audited."""
    export = StudyExport.objects.select_related("study__organization").filter(pk=export_id).first()
    allowed = (
        export is not None
        and export.requested_by_id == user.pk
        and export.status == StudyExport.Status.READY
        and access.can(user, access.VIEW, export.study)
    )
    study = export.study if export is not None else None
    record_event(
        actor=user,
        action=AuditEvent.Action.EXPORT,
        outcome=AuditEvent.Outcome.ALLOWED if allowed else AuditEvent.Outcome.DENIED,
        target=study,
        patient_id=study.patient_id if study else None,
        region=study.organization.region if study else "",
        detail={
            "download": export_id,
            "anonymized": ("yes" if export.is_anonymized else "no") if export else "",
        },
    )
    if not allowed:
        raise Http404("No such export")
    return export


def remove_expired_exports(*, now: dt.datetime | None = None) -> int:
    """Delete exports (their ZIP and their row) older than a day; returns how many."""
    before = (now or timezone.now()) - EXPORT_LIFETIME
    count = 0
    for export in StudyExport.objects.filter(created_at__lt=before).iterator():
        if export.file:
            default_storage.delete(export.file)
        export.delete()
        count += 1
    return count


def open_export(export: StudyExport) -> IO[bytes]:
    """The ZIP of a ready export, to stream (the storage API: a disk or object storage)."""
    return default_storage.open(export.file, "rb")
