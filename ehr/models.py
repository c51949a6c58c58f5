"""The patient registry and the clinical record, the health diary and its alerts, lab messages.

The record follows FHIR R4's resources closely (Encounter, Condition, MedicationStatement,
AllergyIntolerance, Observation, DocumentReference) so that import and export are a mapping,
not a translation. Rows that came from outside (FHIR, HL7, the diary's offline queue) keep
the identifier they came with, which makes every import idempotent.
"""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, Region


def validate_pin(value: str) -> None:
    """The personal identification number (ПИН / ЖСН) of Kyrgyzstan: 14 digits."""
    if not re.fullmatch(r"\d{14}", value):
        raise ValidationError(_("A personal number (PIN) has exactly 14 digits."))


class Patient(models.Model):
    """A person whose record the platform keeps."""

    class Sex(models.TextChoices):
        FEMALE = "female", _("female")
        MALE = "male", _("male")
        OTHER = "other", _("other")
        UNKNOWN = "unknown", _("unknown")

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="patients",
        verbose_name=_("home clinic"),
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="patient",
        verbose_name=_("account"),
    )
    pin = models.CharField(
        _("personal number (PIN)"),
        max_length=14,
        unique=True,
        null=True,
        blank=True,
        validators=[validate_pin],
    )
    family_name = models.CharField(_("family name"), max_length=100)
    given_name = models.CharField(_("given name"), max_length=100)
    patronymic = models.CharField(_("patronymic"), max_length=100, blank=True)
    family_name_latin = models.CharField(_("family name (Latin)"), max_length=100, blank=True)
    given_name_latin = models.CharField(_("given name (Latin)"), max_length=100, blank=True)
    birth_date = models.DateField(_("birth date"))
    sex = models.CharField(_("sex"), max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    address = models.CharField(_("address"), max_length=300, blank=True)
    region = models.CharField(_("region"), max_length=32, choices=Region.choices, blank=True)
    # Every spelling of the name reduced to one Latin skeleton (see ehr.transliteration), so
    # that "Жумабеков", "Zhumabekov" and "Jumabekov" find each other.
    search_key = models.CharField(max_length=400, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering = ["family_name", "given_name"]
        indexes = [models.Index(fields=["birth_date"])]

    def __str__(self) -> str:
        return self.full_name

    def get_absolute_url(self) -> str:
        return reverse("ehr:patient-detail", args=[self.pk])

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.family_name, self.given_name, self.patronymic) if p)

    @property
    def latin_name(self) -> str:
        return " ".join(p for p in (self.family_name_latin, self.given_name_latin) if p)


class ExternalIdentity(models.Model):
    """Where a row came from, when it came from outside: the key of idempotent imports."""

    source_system = models.CharField(_("source system"), max_length=200, blank=True)
    source_id = models.CharField(_("source identifier"), max_length=200, blank=True)

    class Meta:
        abstract = True


class RecordEntry(ExternalIdentity):
    """Fields shared by every entry of a patient's record."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, verbose_name=_("patient"))
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recorded by"),
    )
    recorded_at = models.DateTimeField(_("recorded"), default=timezone.now)

    class Meta:
        abstract = True
        constraints: list = []


def _unique_source(model_name: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(
        fields=["patient", "source_system", "source_id"],
        condition=~models.Q(source_id=""),
        name=f"{model_name}_unique_source",
    )


class Encounter(RecordEntry):
    class Kind(models.TextChoices):
        OUTPATIENT = "outpatient", _("outpatient visit")
        HOME = "home", _("home visit")
        TELECONSULTATION = "teleconsultation", _("teleconsultation")
        INPATIENT = "inpatient", _("hospital stay")
        EMERGENCY = "emergency", _("emergency")

    class Status(models.TextChoices):
        PLANNED = "planned", _("planned")
        IN_PROGRESS = "in-progress", _("in progress")
        FINISHED = "finished", _("finished")
        CANCELLED = "cancelled", _("cancelled")

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("where")
    )
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.FINISHED
    )
    started_at = models.DateTimeField(_("start"))
    ended_at = models.DateTimeField(_("end"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("encounter")
        verbose_name_plural = _("encounters")
        ordering = ["-started_at"]
        constraints = [_unique_source("encounter")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.started_at:%Y-%m-%d}"


class Condition(RecordEntry):
    class ClinicalStatus(models.TextChoices):
        ACTIVE = "active", _("active")
        RECURRENCE = "recurrence", _("recurrence")
        REMISSION = "remission", _("remission")
        RESOLVED = "resolved", _("resolved")

    encounter = models.ForeignKey(
        Encounter, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("encounter")
    )
    icd10_code = models.CharField(_("ICD-10 code"), max_length=10)
    description = models.CharField(_("diagnosis"), max_length=300)
    clinical_status = models.CharField(
        _("status"), max_length=16, choices=ClinicalStatus.choices, default=ClinicalStatus.ACTIVE
    )
    onset_date = models.DateField(_("onset"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("condition")
        verbose_name_plural = _("conditions")
        ordering = ["-recorded_at"]
        constraints = [_unique_source("condition")]

    def __str__(self) -> str:
        return f"{self.icd10_code} {self.description}"


class Medication(RecordEntry):
    """A medication the patient takes or took (FHIR MedicationStatement)."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("taking")
        COMPLETED = "completed", _("finished")
        STOPPED = "stopped", _("stopped")

    name = models.CharField(_("medication"), max_length=200)
    dose = models.CharField(_("dose"), max_length=100, blank=True)
    route = models.CharField(_("route"), max_length=50, blank=True)
    frequency = models.CharField(_("how often"), max_length=100, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    start_date = models.DateField(_("from"), null=True, blank=True)
    end_date = models.DateField(_("until"), null=True, blank=True)
    note = models.CharField(_("note"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("medication")
        verbose_name_plural = _("medications")
        ordering = ["status", "name"]
        constraints = [_unique_source("medication")]

    def __str__(self) -> str:
        return " ".join(p for p in (self.name, self.dose, self.frequency) if p)


class Allergy(RecordEntry):
    class Severity(models.TextChoices):
        MILD = "mild", _("mild")
        MODERATE = "moderate", _("moderate")
        SEVERE = "severe", _("severe")

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        INACTIVE = "inactive", _("inactive")
        RESOLVED = "resolved", _("resolved")

    substance = models.CharField(_("substance"), max_length=200)
    reaction = models.CharField(_("reaction"), max_length=200, blank=True)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE
    )

    class Meta:
        verbose_name = _("allergy")
        verbose_name_plural = _("allergies")
        ordering = ["substance"]
        constraints = [_unique_source("allergy")]

    def __str__(self) -> str:
        return self.substance


# Names of the codes everyone meets, in the reader's language (the stored `display` is
# whatever the source said, often in another language).
KNOWN_CODES = {
    "85354-9": _("Blood pressure"),
    "8480-6": _("Systolic blood pressure"),
    "8462-4": _("Diastolic blood pressure"),
    "8867-4": _("Pulse"),
    "15074-8": _("Blood glucose"),
    "2339-0": _("Blood glucose"),
    "29463-7": _("Weight"),
    "8310-5": _("Body temperature"),
    "59408-5": _("Oxygen saturation (SpO2)"),
    "75325-1": _("Symptoms"),
}
# UCUM units as people write them.
UNIT_LABELS = {"mm[Hg]": "mmHg", "Cel": "°C", "/min": _("/min"), "umol/L": "µmol/L"}


class Observation(RecordEntry):
    """A vital sign, a lab result or a symptom: one FHIR Observation.

    Blood pressure is one observation (LOINC 85354-9) with systolic and diastolic
    components, as FHIR's vital-signs profile has it.
    """

    class Category(models.TextChoices):
        VITAL_SIGNS = "vital-signs", _("vital signs")
        LABORATORY = "laboratory", _("laboratory")
        SURVEY = "survey", _("symptoms")

    class Source(models.TextChoices):
        CLINICIAN = "clinician", _("clinician")
        PATIENT = "patient", _("patient")
        LAB = "lab", _("laboratory")
        IMPORT = "import", _("import")

    class Interpretation(models.TextChoices):
        NORMAL = "N", _("normal")
        LOW = "L", _("low")
        HIGH = "H", _("high")
        ABNORMAL = "A", _("abnormal")

    encounter = models.ForeignKey(
        Encounter, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("encounter")
    )
    category = models.CharField(_("category"), max_length=16, choices=Category.choices)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    code = models.CharField(_("LOINC code"), max_length=20, blank=True)
    display = models.CharField(_("what"), max_length=200)
    value = models.DecimalField(_("value"), max_digits=12, decimal_places=4, null=True, blank=True)
    unit = models.CharField(_("unit"), max_length=32, blank=True)
    value_text = models.TextField(_("text value"), blank=True)
    # [{"code": "8480-6", "display": "Systolic", "value": "120", "unit": "mm[Hg]"}, ...]
    components = models.JSONField(_("components"), default=list, blank=True)
    reference_low = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    reference_high = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    interpretation = models.CharField(
        _("interpretation"), max_length=2, choices=Interpretation.choices, blank=True
    )
    effective_at = models.DateTimeField(_("when"), db_index=True)

    class Meta:
        verbose_name = _("observation")
        verbose_name_plural = _("observations")
        ordering = ["-effective_at"]
        constraints = [_unique_source("observation")]

    def __str__(self) -> str:
        return f"{self.display}: {self.value_display}"

    @property
    def label(self) -> str:
        return str(KNOWN_CODES.get(self.code, self.display))

    @property
    def value_display(self) -> str:
        if self.components:
            values = "/".join(
                f"{c['value']:g}" if isinstance(c["value"], float) else str(c["value"])
                for c in self.components
            )
            unit = self.components[0].get("unit", "")
            return f"{values} {UNIT_LABELS.get(unit, unit)}".strip()
        if self.value is not None:
            return f"{self.value.normalize():f} {UNIT_LABELS.get(self.unit, self.unit)}".strip()
        return self.value_text


class ClinicalNote(RecordEntry):
    encounter = models.ForeignKey(
        Encounter, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("encounter")
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    text = models.TextField(_("text"))

    class Meta:
        verbose_name = _("clinical note")
        verbose_name_plural = _("clinical notes")
        ordering = ["-recorded_at"]
        constraints = [_unique_source("clinicalnote")]

    def __str__(self) -> str:
        return self.title or self.text[:60]


def document_path(document: Document, filename: str) -> str:
    return f"ehr/documents/{document.patient_id}/{uuid.uuid4().hex}/{filename}"


class Document(RecordEntry):
    """A file in the record: a PDF, a photo, a scan, a signed consult report."""

    class Kind(models.TextChoices):
        REPORT = "report", _("report")
        REFERRAL = "referral", _("referral letter")
        DISCHARGE = "discharge", _("discharge summary")
        LAB = "lab", _("laboratory report")
        IMAGE = "image", _("image")
        OTHER = "other", _("other")

    title = models.CharField(_("title"), max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.OTHER)
    file = models.FileField(_("file"), upload_to=document_path, max_length=300)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        ordering = ["-recorded_at"]
        constraints = [_unique_source("document")]

    def __str__(self) -> str:
        return self.title


class DiaryMeasure(models.TextChoices):
    """What a patient records in the health diary, and what thresholds watch."""

    BLOOD_PRESSURE = "blood_pressure", _("blood pressure")
    PULSE = "pulse", _("pulse")
    GLUCOSE = "glucose", _("blood glucose")
    WEIGHT = "weight", _("weight")
    TEMPERATURE = "temperature", _("temperature")
    SPO2 = "spo2", _("oxygen saturation (SpO2)")
    SYMPTOMS = "symptoms", _("symptoms")


class DiaryThreshold(models.Model):
    """The care team's target range for one measure of one patient.

    For blood pressure, `high`/`low` apply to the systolic value and `second_high`/
    `second_low` to the diastolic.
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="thresholds")
    measure = models.CharField(_("measure"), max_length=32, choices=DiaryMeasure.choices)
    low = models.DecimalField(_("lowest"), max_digits=8, decimal_places=2, null=True, blank=True)
    high = models.DecimalField(_("highest"), max_digits=8, decimal_places=2, null=True, blank=True)
    second_low = models.DecimalField(
        _("lowest diastolic"), max_digits=8, decimal_places=2, null=True, blank=True
    )
    second_high = models.DecimalField(
        _("highest diastolic"), max_digits=8, decimal_places=2, null=True, blank=True
    )
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    set_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("diary threshold")
        verbose_name_plural = _("diary thresholds")
        constraints = [
            models.UniqueConstraint(fields=["patient", "measure"], name="one_threshold_per_measure")
        ]

    def __str__(self) -> str:
        return f"{self.get_measure_display()}: {self.low}–{self.high}"


class Alert(models.Model):
    """A diary entry outside the care team's range; shown until a clinician acknowledges it."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="alerts")
    observation = models.OneToOneField(Observation, on_delete=models.CASCADE, related_name="alert")
    measure = models.CharField(_("measure"), max_length=32, choices=DiaryMeasure.choices)
    message = models.CharField(_("message"), max_length=300)
    created_at = models.DateTimeField(_("raised"), default=timezone.now)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("acknowledged by"),
    )
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.message

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class LabMessage(models.Model):
    """An HL7 v2 message as received, kept whatever happens to it (never dropped)."""

    class Channel(models.TextChoices):
        MLLP = "mllp", "MLLP"
        HTTP = "http", "HTTP"

    class Status(models.TextChoices):
        ACCEPTED = "accepted", _("accepted")
        UNMATCHED = "unmatched", _("no matching patient")
        REJECTED = "rejected", _("could not be read")
        RESOLVED = "resolved", _("resolved by hand")

    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    channel = models.CharField(_("channel"), max_length=8, choices=Channel.choices)
    sender = models.CharField(_("sender"), max_length=200, blank=True)
    control_id = models.CharField(_("message control id"), max_length=100, blank=True)
    raw = models.TextField(_("message"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    error = models.TextField(_("error"), blank=True)
    patient = models.ForeignKey(
        Patient, on_delete=models.SET_NULL, null=True, blank=True, related_name="lab_messages"
    )
    observation_count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("lab message")
        verbose_name_plural = _("lab messages")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.channel} {self.control_id} {self.get_status_display()}"
