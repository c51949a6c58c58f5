"""Referrals (consult requests) from a clinic to a specialist, routed by a regional centre.

A referral moves through the states of `Referral.Status`; every move is a service in
consults/services/referrals.py and leaves a `ReferralEvent` (who, when, why).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, Region, Specialty
from ehr.models import Document, Patient


class Referral(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        SUBMITTED = "submitted", _("submitted")
        TRIAGED = "triaged", _("triaged")
        SCHEDULED = "scheduled", _("scheduled")
        IN_SESSION = "in_session", _("in session")
        REPORT_SIGNED = "report_signed", _("report signed")
        CLOSED = "closed", _("closed")
        DECLINED = "declined", _("declined")
        CANCELLED = "cancelled", _("cancelled")

    class Urgency(models.TextChoices):
        ROUTINE = "routine", _("routine")
        URGENT = "urgent", _("urgent")
        EMERGENCY = "emergency", _("emergency")

    class Mode(models.TextChoices):
        LIVE = "live", _("live session")
        ASYNC = "async", _("written opinion (store and forward)")

    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="referrals", verbose_name=_("patient")
    )
    referring_organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="referrals_made"
    )
    referring_clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="referrals_made"
    )
    # The region whose centre triages it: the referring clinic's.
    region = models.CharField(_("region"), max_length=32, choices=Region.choices)
    specialty = models.ForeignKey(
        Specialty, on_delete=models.PROTECT, related_name="+", verbose_name=_("specialty")
    )
    urgency = models.CharField(
        _("urgency"), max_length=16, choices=Urgency.choices, default=Urgency.ROUTINE
    )
    question = models.TextField(_("clinical question"))
    documents = models.ManyToManyField(
        Document, blank=True, related_name="referrals", verbose_name=_("attached documents")
    )
    # The EHR extract travels as the record stood when the referral was submitted.
    extract_as_of = models.DateTimeField(_("extract as of"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    specialist = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="consults",
        verbose_name=_("specialist"),
    )
    mode = models.CharField(_("mode"), max_length=8, choices=Mode.choices, blank=True)
    priority = models.PositiveSmallIntegerField(_("priority"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    triaged_at = models.DateTimeField(_("triaged"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.patient} — {self.specialty}"

    def get_absolute_url(self) -> str:
        return reverse("consults:referral-detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def triage_due_at(self) -> dt.datetime | None:
        """When an untriaged referral becomes overdue: 2 hours for urgent and emergency ones,
        2 working days (Monday to Friday) for routine ones."""
        if self.submitted_at is None:
            return None
        if self.urgency != self.Urgency.ROUTINE:
            return self.submitted_at + dt.timedelta(hours=2)
        due, days = timezone.localtime(self.submitted_at), 0
        while days < 2:
            due += dt.timedelta(days=1)
            if due.weekday() < 5:
                days += 1
        return due

    def is_overdue_at(self, moment: dt.datetime) -> bool:
        due = self.triage_due_at()
        return self.status == self.Status.SUBMITTED and due is not None and moment > due


# While a referral is in one of these, its specialist reads the patient's record.
OPEN_STATUSES = (
    Referral.Status.TRIAGED,
    Referral.Status.SCHEDULED,
    Referral.Status.IN_SESSION,
    Referral.Status.REPORT_SIGNED,
)


class ReferralEvent(models.Model):
    """One move of a referral: the history the referral page shows."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    from_status = models.CharField(max_length=16, choices=Referral.Status.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=Referral.Status.choices)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"


class ConsultReport(models.Model):
    """The specialist's answer; once signed it is a document in the patient's record."""

    referral = models.OneToOneField(Referral, on_delete=models.CASCADE, related_name="report")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    findings = models.TextField(_("findings"))
    diagnosis_code = models.CharField(_("diagnosis (ICD-10)"), max_length=10)
    diagnosis_text = models.CharField(_("diagnosis"), max_length=300)
    recommendations = models.TextField(_("recommendations"))
    follow_up = models.CharField(_("follow-up"), max_length=300, blank=True)
    signed_at = models.DateTimeField(_("signed"), null=True, blank=True)
    document = models.OneToOneField(
        Document, on_delete=models.PROTECT, null=True, blank=True, related_name="consult_report"
    )

    class Meta:
        verbose_name = _("consult report")
        verbose_name_plural = _("consult reports")

    def __str__(self) -> str:
        return f"{self.diagnosis_code} {self.diagnosis_text}"


class AvailabilityRule(models.Model):
    """A specialist's weekly consulting hours, cut into slots, in their own time zone."""

    specialist = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="availability_rules"
    )
    weekday = models.PositiveSmallIntegerField(
        _("weekday"), help_text=_("0 is Monday, 6 is Sunday")
    )
    start_time = models.TimeField(_("from"))
    end_time = models.TimeField(_("until"))
    slot_minutes = models.PositiveSmallIntegerField(_("slot length (minutes)"), default=30)
    valid_from = models.DateField(_("valid from"), null=True, blank=True)
    valid_until = models.DateField(_("valid until"), null=True, blank=True)

    class Meta:
        verbose_name = _("availability rule")
        verbose_name_plural = _("availability rules")
        ordering = ["specialist", "weekday", "start_time"]

    def __str__(self) -> str:
        return f"{self.specialist} {self.weekday} {self.start_time}–{self.end_time}"


class AvailabilityException(models.Model):
    """Leave, a holiday, a conference: no slots between `starts_at` and `ends_at`."""

    specialist = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="availability_exceptions"
    )
    starts_at = models.DateTimeField(_("from"))
    ends_at = models.DateTimeField(_("until"))
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("availability exception")
        verbose_name_plural = _("availability exceptions")
        ordering = ["starts_at"]

    def __str__(self) -> str:
        return f"{self.specialist} {self.starts_at:%Y-%m-%d}–{self.ends_at:%Y-%m-%d}"


class Appointment(models.Model):
    """A booked session of a referral: one slot of the specialist's calendar.

    Bookings start on the slot grid, so "one booking per specialist per start" (a partial
    unique constraint, enforced by the database on SQLite and PostgreSQL alike) is what makes
    two people booking the same slot at once get one booking and one refusal.
    """

    class Kind(models.TextChoices):
        DOCTOR_DOCTOR = "doctor_doctor", _("doctor–doctor")
        DOCTOR_PATIENT = "doctor_patient", _("doctor–patient")
        GROUP = "group", _("several participants")

    class Status(models.TextChoices):
        BOOKED = "booked", _("booked")
        CANCELLED = "cancelled", _("cancelled")
        COMPLETED = "completed", _("completed")

    referral = models.ForeignKey(
        Referral, on_delete=models.CASCADE, related_name="appointments", verbose_name=_("referral")
    )
    specialist = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="appointments"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    starts_at = models.DateTimeField(_("start"), db_index=True)
    ends_at = models.DateTimeField(_("end"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.BOOKED
    )
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    booked_at = models.DateTimeField(default=timezone.now)
    cancel_reason = models.CharField(_("reason"), max_length=300, blank=True)
    reminded_24h_at = models.DateTimeField(null=True, blank=True)
    reminded_15m_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        ordering = ["starts_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["specialist", "starts_at"],
                condition=models.Q(status="booked"),
                name="one_booking_per_specialist_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{self.referral} {self.starts_at:%Y-%m-%d %H:%M}"

    def is_joinable_at(self, moment: dt.datetime) -> bool:
        """Participants may join from 15 minutes before the start until the end."""
        return (
            self.status == self.Status.BOOKED
            and self.starts_at - dt.timedelta(minutes=15) <= moment <= self.ends_at
        )


class Participant(models.Model):
    """Someone invited to an appointment: a user, or a patient or relative without an account
    (who joins by a signed link sent to their e-mail or phone)."""

    class Role(models.TextChoices):
        SPECIALIST = "specialist", _("specialist")
        CLINICIAN = "clinician", _("clinician")
        PATIENT = "patient", _("patient")
        INTERPRETER = "interpreter", _("interpreter")
        FAMILY = "family", _("family member")

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="participants"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="participations",
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    name = models.CharField(_("name"), max_length=200)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    # Copied from the appointment so that the database itself refuses double-booking a person.
    starts_at = models.DateTimeField()
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = _("participant")
        verbose_name_plural = _("participants")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "starts_at"],
                condition=models.Q(is_active=True, user__isnull=False),
                name="one_booking_per_person_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()})"


class JoinLink(models.Model):
    """A patient's (or relative's) way into one appointment without an account or password.

    The token is random and only its hash is stored; the link works only around the
    appointment time and only for that appointment.
    """

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="links")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    first_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"link for {self.participant}"


class Notification(models.Model):
    """An in-app message to a user (invitations, changes, reminders, signed reports)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    text = models.CharField(_("text"), max_length=300)
    url = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.text


class SessionPresence(models.Model):
    """Where one person stands in a session's call: waiting room, admitted, declined, left.

    One row per person per appointment, keyed like the signaling messages ("user:<id>" or
    "participant:<id>"); it outlives a dropped connection so that a reconnecting browser
    comes back in the same state.
    """

    class State(models.TextChoices):
        WAITING = "waiting", _("waiting to be admitted")
        ADMITTED = "admitted", _("in the call")
        DECLINED = "declined", _("declined")
        LEFT = "left", _("left")

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="presences")
    participant_key = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, null=True, blank=True, related_name="presences"
    )
    name = models.CharField(_("name"), max_length=200)
    role = models.CharField(_("role"), max_length=16, choices=Participant.Role.choices)
    state = models.CharField(_("state"), max_length=16, choices=State.choices)
    # Kept after leaving: an admitted patient whose phone dropped the call is not sent back
    # to the waiting room.
    admitted_at = models.DateTimeField(null=True, blank=True)
    audio_on = models.BooleanField(default=True)
    video_on = models.BooleanField(default=True)
    # Consent to recording this session, given (or withdrawn) by this person on the call page.
    recording_consent = models.BooleanField(_("consents to recording"), default=False)
    consent_changed_at = models.DateTimeField(null=True, blank=True)
    # The socket that holds the place: a late disconnect of an older socket must not mark
    # a reconnected person as gone.
    channel_name = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("session presence")
        verbose_name_plural = _("session presences")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "participant_key"], name="one_presence_per_person"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class ChatMessage(models.Model):
    """A message written in a session's chat, kept with the consult."""

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="chat_messages"
    )
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A patient or relative who joined by link, without an account.
    author_participant = models.ForeignKey(
        Participant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    author_name = models.CharField(_("author"), max_length=200)
    text = models.TextField(_("text"))
    sent_at = models.DateTimeField(_("sent"), default=timezone.now)

    class Meta:
        verbose_name = _("chat message")
        verbose_name_plural = _("chat messages")
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"{self.author_name}: {self.text[:40]}"


class Recording(models.Model):
    """A recording of a session's call, made only while everyone in the call consented.

    The media broker writes each participant's encoded media (consults/media/recorder.py);
    a Celery task (consults/recording_tasks.py) composes them into one MP4
    (consults/media/compose.py)."""

    class Status(models.TextChoices):
        RECORDING = "recording", _("recording")
        PROCESSING = "processing", _("processing")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")

    appointment = models.ForeignKey(
        Appointment, on_delete=models.PROTECT, related_name="recordings"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_by_name = models.CharField(_("started by"), max_length=200, blank=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)
    # Why it stopped: "stopped", "consent_withdrawn", "joined_without_consent", "everyone_left"
    stop_reason = models.CharField(max_length=32, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RECORDING
    )
    error = models.TextField(_("error"), blank=True)
    file = models.FileField(_("file"), upload_to="recordings/%Y/%m/", blank=True)
    duration = models.FloatField(_("duration (seconds)"), null=True, blank=True)
    size = models.BigIntegerField(_("size (bytes)"), null=True, blank=True)

    class Meta:
        verbose_name = _("recording")
        verbose_name_plural = _("recordings")
        ordering = ["started_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment"],
                condition=models.Q(status="recording"),
                name="one_running_recording_per_session",
            )
        ]

    def __str__(self) -> str:
        return f"recording {self.pk} of appointment {self.appointment_id} ({self.status})"
