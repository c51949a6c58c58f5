"""Filters of the audit log: one definition for the page, its CSV export and the API."""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import AuditEvent, Region


def _start_of_day(day: dt.date) -> dt.datetime:
    # Dates in a filter are days in the user's own time zone.
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(
        field_name="actor_label", lookup_expr="icontains", label=_("Who")
    )
    action = django_filters.ChoiceFilter(choices=AuditEvent.Action.choices, label=_("Action"))
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices, label=_("Outcome"))
    patient = django_filters.NumberFilter(field_name="patient_id", label=_("Patient id"))
    region = django_filters.ChoiceFilter(choices=Region.choices, label=_("Region"))
    since = django_filters.DateFilter(
        method="filter_since", label=_("From"), widget=forms.DateInput(attrs={"type": "date"})
    )
    until = django_filters.DateFilter(
        method="filter_until", label=_("To"), widget=forms.DateInput(attrs={"type": "date"})
    )

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "outcome", "patient", "region", "since", "until"]

    def filter_since(self, queryset: QuerySet, name: str, value: dt.date) -> QuerySet:
        return queryset.filter(at__gte=_start_of_day(value))

    def filter_until(self, queryset: QuerySet, name: str, value: dt.date) -> QuerySet:
        return queryset.filter(at__lt=_start_of_day(value + dt.timedelta(days=1)))
