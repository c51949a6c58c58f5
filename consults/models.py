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
