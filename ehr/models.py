from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization


def validate_pin(value: str) -> None:
    """The personal identification number (ПИН / ЖСН) of Kyrgyzstan: 14 digits."""
    if not re.fullmatch(r"\d{14}", value):
        raise ValidationError(_("A personal number (PIN) has exactly 14 digits."))


class Patient(models.Model):
    """A person whose record the platform keeps; the registry grows in the EHR issue."""

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
    birth_date = models.DateField(_("birth date"))
    sex = models.CharField(_("sex"), max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering = ["family_name", "given_name"]

    def __str__(self) -> str:
        return self.full_name

    def get_absolute_url(self) -> str:
        return reverse("ehr:patient-detail", args=[self.pk])

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.family_name, self.given_name, self.patronymic) if p)
