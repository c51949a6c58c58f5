"""Writing the clinical record: encounters, conditions, medications, allergies, observations,
notes and documents. Clinicians of the patient's organization write (ehr/policies.py)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import models, transaction
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from ehr.models import (
    Allergy,
    ClinicalNote,
    Condition,
    Document,
    Encounter,
    Medication,
    Observation,
    Patient,
)

ENTRY_MODELS: dict[str, type[models.Model]] = {
    "encounter": Encounter,
    "condition": Condition,
    "medication": Medication,
    "allergy": Allergy,
    "observation": Observation,
    "note": ClinicalNote,
    "document": Document,
}

MAX_DOCUMENT_BYTES = 25 * 1024 * 1024

# What a document may be, recognised by its first bytes rather than by its name or the
# browser's word: a PDF, or a photo of a paper record.
_SIGNATURES = [
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"RIFF", "image/webp"),
    # An MP4 video (an ultrasound clip, a recording of a wound): an ISO BMFF "ftyp" box first,
    # its signature at offset 4 after the box size.
    (b"ftyp", "video/mp4"),
]


def sniff_document_type(head: bytes) -> str | None:
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            if content_type == "image/webp" and head[8:12] != b"WEBP":
                continue
            return content_type
        if content_type == "video/mp4" and head[4:8] == signature:
            return content_type
    return None


def _audit_write(*, author: User, entry: models.Model, patient: Patient, action: str) -> None:
    record_event(
        actor=author,
        action=action,
        target=entry,
        patient_id=patient.pk,
        region=patient.organization.region,
    )


@transaction.atomic
def add_record_entry(
    *, patient: Patient, author: User, kind: str, fields: dict[str, Any]
) -> models.Model:
    """Add one entry of `kind` (see ENTRY_MODELS) to the patient's record."""
    model = ENTRY_MODELS[kind]
    entry = model(patient=patient, recorded_by=author, **fields)
    if kind == "observation" and not entry.source:
        entry.source = Observation.Source.CLINICIAN
    if not access.can_create(author, entry):
        raise PermissionDenied
    entry.full_clean()
    entry.save()
    _audit_write(author=author, entry=entry, patient=patient, action=AuditEvent.Action.CREATE)
    return entry


@transaction.atomic
def change_record_entry(*, entry: models.Model, author: User, fields: dict[str, Any]) -> None:
    """Change an entry (a condition resolved, a medication stopped, a typo mended)."""
    access.ensure_can(author, access.CHANGE, entry)
    for name, value in fields.items():
        setattr(entry, name, value)
    entry.full_clean()
    entry.save()
    _audit_write(author=author, entry=entry, patient=entry.patient, action=AuditEvent.Action.UPDATE)


@transaction.atomic
def attach_document(
    *, patient: Patient, author: User, title: str, kind: str, upload: UploadedFile
) -> Document:
    """Keep a PDF or an image in the record; anything else is refused with the reason."""
    if upload.size > MAX_DOCUMENT_BYTES:
        raise ValidationError(
            _("The file is too large (%(size)d MB); the limit is %(limit)d MB.")
            % {"size": upload.size // 2**20, "limit": MAX_DOCUMENT_BYTES // 2**20}
        )
    head = upload.read(16)
    upload.seek(0)
    content_type = sniff_document_type(head)
    if content_type is None:
        raise ValidationError(
            _("Only PDF files and JPEG, PNG or WebP images (or MP4 videos) can be attached.")
        )
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    document = Document(
        patient=patient,
        recorded_by=author,
        title=title or upload.name,
        kind=kind,
        content_type=content_type,
        size=upload.size,
        sha256=digest.hexdigest(),
    )
    if not access.can_create(author, document):
        raise PermissionDenied
    document.file.save(upload.name, upload, save=False)
    document.full_clean()
    document.save()
    _audit_write(author=author, entry=document, patient=patient, action=AuditEvent.Action.CREATE)
    return document
