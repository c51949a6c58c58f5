"""The imaging index: what was received, and the DICOM patient → study → series → instance.

Every file is first kept exactly as received (`ReceivedFile`, with its SHA-256); ingest then
parses it and fills the index. The index keeps the attributes that queries (QIDO-RS, C-FIND,
the study list) need, and each instance's DICOM JSON metadata (without bulk data), so that
WADO-RS metadata is read from the database, never by parsing files.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization

# PS3.5 6.2: an AE title is up to 16 characters of the default repertoire, no backslash.
validate_ae_title = RegexValidator(
    r"^[ -\[\]-~]{1,16}$", _("An AE title is 1 to 16 printable ASCII characters, no backslash.")
)


class DicomNode(models.Model):
    """A DICOM application entity registered for an organization: a modality or PACS that may
    send to us (C-STORE), query and retrieve, or receive what a C-MOVE sends."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="dicom_nodes"
    )
    ae_title = models.CharField(
        _("AE title"), max_length=16, unique=True, validators=[validate_ae_title]
    )
    description = models.CharField(_("description"), max_length=200, blank=True)
    # The address associations from this AE must come from; empty accepts any address.
    host = models.CharField(_("host"), max_length=255, blank=True)
    # Where C-MOVE delivers (its own SCP); 0 when it is not a move destination.
    port = models.PositiveIntegerField(_("port"), default=0, validators=[MaxValueValidator(65535)])
    may_store = models.BooleanField(_("may send studies"), default=True)
    may_query = models.BooleanField(_("may query and retrieve"), default=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("DICOM node")
        verbose_name_plural = _("DICOM nodes")
        ordering = ["ae_title"]

    def __str__(self) -> str:
        return self.ae_title


class UploadBatch(models.Model):
    """Files a user sent together (a folder, a ZIP, a CD): their progress is shown as one."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    # The patient the uploader chose: non-DICOM images are wrapped for them, and studies are
    # attached to them.
    patient = models.ForeignKey(
        "ehr.Patient", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Archives and folders unpacked into this batch (their names), and what was refused in them.
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.pk}"


def received_path(received: ReceivedFile, filename: str) -> str:
    day = timezone.now()
    return f"imaging/received/{day:%Y/%m/%d}/{received.sha256}"


class ReceivedFile(models.Model):
    """One file exactly as it arrived, kept before anything else happens to it."""

    class Source(models.TextChoices):
        UPLOAD = "upload", _("browser upload")
        ARCHIVE = "archive", _("archive or folder")
        DICOMDIR = "dicomdir", _("media with DICOMDIR")
        STORE = "store", _("C-STORE")
        STOW = "stow", _("STOW-RS")
        WRAPPED = "wrapped", _("photo wrapped as DICOM")

    class Status(models.TextChoices):
        RECEIVED = "received", _("waiting")
        INGESTED = "ingested", _("indexed")
        DUPLICATE = "duplicate", _("already had it")
        CONFLICT = "conflict", _("same UID, different content")
        DOCUMENT = "document", _("kept as a document")
        FAILED = "failed", _("failed")

    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RECEIVED, db_index=True
    )
    file = models.FileField(upload_to=received_path, max_length=300)
    original_name = models.CharField(max_length=500, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    calling_ae = models.CharField(max_length=16, blank=True)
    batch = models.ForeignKey(
        UploadBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="files"
    )
    error = models.TextField(blank=True)
    sop_instance_uid = models.CharField(max_length=64, blank=True, db_index=True)
    instance = models.ForeignKey(
        "Instance", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return self.original_name or self.sha256[:12]


class Study(models.Model):
    class Match(models.TextChoices):
        MATCHED = "matched", _("matched")
        UNMATCHED = "unmatched", _("matches nobody")
        AMBIGUOUS = "ambiguous", _("matches several patients")

    study_instance_uid = models.CharField(max_length=64, unique=True)
    # The organization that received the study (its clinicians resolve unmatched ones).
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(
        "ehr.Patient",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="studies",
        verbose_name=_("patient"),
    )
    match = models.CharField(max_length=16, choices=Match.choices, default=Match.UNMATCHED)
    # The DICOM patient module as received (PS3.3 C.7.1.1).
    dicom_patient_id = models.CharField(_("patient ID"), max_length=64, blank=True, db_index=True)
    dicom_patient_name = models.CharField(_("patient name"), max_length=324, blank=True)
    dicom_birth_date = models.CharField(max_length=8, blank=True)
    dicom_sex = models.CharField(max_length=16, blank=True)
    study_date = models.CharField(_("study date"), max_length=8, blank=True, db_index=True)
    study_time = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(
        _("accession number"), max_length=16, blank=True, db_index=True
    )
    study_id = models.CharField(max_length=16, blank=True)
    description = models.CharField(_("description"), max_length=64, blank=True)
    referring_physician = models.CharField(max_length=324, blank=True)
    # Modalities in study, joined with a backslash as DICOM writes them ("CT\SR").
    modalities = models.CharField(_("modalities"), max_length=64, blank=True, db_index=True)
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        ordering = ["-study_date", "-study_time", "-id"]

    def __str__(self) -> str:
        return f"{self.study_date} {self.modalities} {self.description}".strip()

    @property
    def modality_list(self) -> list[str]:
        return [m for m in self.modalities.split("\\") if m]


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64, unique=True)
    modality = models.CharField(_("modality"), max_length=16, blank=True, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(_("description"), max_length=64, blank=True)
    body_part = models.CharField(max_length=16, blank=True)
    series_date = models.CharField(max_length=8, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    # Renditions (Celery): a small thumbnail, a preview at the default window, and for
    # multi-frame or cine series a browser-playable MP4; paths in the default storage.
    thumbnail = models.CharField(max_length=300, blank=True)
    preview = models.CharField(max_length=300, blank=True)
    video = models.CharField(max_length=300, blank=True)
    # The instance count the renditions were made for: more instances arrived → redo them.
    rendered_for = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("series")
        verbose_name_plural = _("series")
        ordering = ["series_number", "id"]

    def __str__(self) -> str:
        return f"{self.modality} {self.series_number or ''} {self.description}".strip()


class Instance(models.Model):
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    number_of_frames = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    # The file as received (never rewritten; transcoded copies are made on request).
    received_file = models.ForeignKey(ReceivedFile, on_delete=models.PROTECT, related_name="+")
    # DICOM JSON model (PS3.18 F.2) of the dataset without bulk data: WADO-RS metadata.
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["instance_number", "id"]

    def __str__(self) -> str:
        return self.sop_instance_uid

    @property
    def has_pixels(self) -> bool:
        return bool(self.rows and self.columns)


class UploadSession(models.Model):
    """One file being uploaded in chunks (our resumable protocol, see imaging/upload_views.py):
    the bytes so far wait in a local staging file until the last chunk, then go to
    `receive_file` like every other arrival."""

    upload_id = models.UUIDField(unique=True)
    batch = models.ForeignKey(UploadBatch, on_delete=models.CASCADE, related_name="sessions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    filename = models.CharField(max_length=500)
    size = models.PositiveBigIntegerField()
    offset = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.filename


class StudyExport(models.Model):
    """A study packed as a ZIP with a DICOMDIR (for a CD or a USB stick), made by Celery."""

    class Status(models.TextChoices):
        PENDING = "pending", _("being prepared")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    is_anonymized = models.BooleanField(_("anonymized"), default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    file = models.CharField(max_length=300, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.study_id}"
