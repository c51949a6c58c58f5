"""Reads of the health diary. Each one checks access and writes the audit event itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import Http404
from django.utils import timezone

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event, record_patient_reads
from ehr.diary.measures import SPECS, measure_of, numbers_of
from ehr.models import Alert, DiaryThreshold, Observation, Patient
from ehr.selectors import patient_for
from ehr.services.diary import DIARY_SOURCE_SYSTEM, KEEP_DIARY

MAX_DAYS = 366
RECENT_SYMPTOMS = 30


def own_diary_patient(user: User) -> Patient:
    """The patient whose diary `user` keeps (their own record), or 404."""
    patient = Patient.objects.select_related("organization").filter(user=user).first()
    if patient is None or not access.can(user, KEEP_DIARY, patient):
        raise Http404("You keep no health diary here")
    return patient


def _number(value: Any) -> float | None:
    return float(value) if value is not None else None


def _threshold_dict(threshold: DiaryThreshold | None) -> dict[str, float | None] | None:
    if threshold is None:
        return None
    return {
        "low": _number(threshold.low),
        "high": _number(threshold.high),
        "second_low": _number(threshold.second_low),
        "second_high": _number(threshold.second_high),
    }


def diary_series(*, user: User, patient_id: int, days: int = 90) -> dict[str, Any]:
    """The patient's readings of the last `days` days, one series per measure, oldest first,
    with each measure's target range, and the latest symptoms as text. Audited as a view of
    the patient (`patient_for`), refused as 404."""
    patient = patient_for(user=user, patient_id=patient_id)
    days = max(1, min(days, MAX_DAYS))
    since = timezone.now() - dt.timedelta(days=days)
    thresholds = {t.measure: t for t in DiaryThreshold.objects.filter(patient=patient)}
    codes = {spec.code: measure for measure, spec in SPECS.items()}
    # Every observation of these codes, whoever recorded it: a clinic's reading belongs on
    # the same chart as the patient's own.
    observations = (
        Observation.objects.filter(patient=patient, code__in=codes, effective_at__gte=since)
        .order_by("effective_at")
        .only("code", "value", "components", "value_text", "effective_at", "source")
    )
    series: dict[str, dict[str, Any]] = {
        measure: {"times": [], "values": [[] for _ in spec.fields]}
        for measure, spec in SPECS.items()
        if not spec.is_text
    }
    symptoms: list[dict[str, Any]] = []
    for observation in observations:
        measure = codes[observation.code]
        if measure in series:
            numbers = numbers_of(observation)
            if len(numbers) != len(series[measure]["values"]):
                continue  # a panel imported without its components: nothing to draw
            series[measure]["times"].append(int(observation.effective_at.timestamp()))
            for index, number in enumerate(numbers):
                series[measure]["values"][index].append(number)
        else:
            symptoms.append(
                {"time": observation.effective_at.isoformat(), "text": observation.value_text}
            )
    for measure, data in series.items():
        data["threshold"] = _threshold_dict(thresholds.get(measure))
    return {
        "patient_id": patient.pk,
        "days": days,
        "series": series,
        "symptoms": symptoms[::-1][:RECENT_SYMPTOMS],
    }


def thresholds_for(patient: Patient) -> dict[str, DiaryThreshold]:
    """The target ranges by measure, for a page that has already read the patient."""
    return {t.measure: t for t in DiaryThreshold.objects.filter(patient=patient)}


def recent_diary_entries(patient: Patient, *, limit: int = 20) -> list[Observation]:
    """The patient's latest diary entries, for a page that has already read the patient;
    each carries `measure_label`, the measure's name in the reader's language."""
    entries = list(
        Observation.objects.filter(patient=patient, source_system=DIARY_SOURCE_SYSTEM)
        .select_related("alert")
        .order_by("-effective_at")[:limit]
    )
    for entry in entries:
        measure = measure_of(entry)
        entry.measure_label = SPECS[measure].label if measure else entry.display
    return entries


def open_alerts_for(user: User, *, limit: int = 50) -> list[Alert]:
    """Alerts not yet acknowledged, of the patients `user` may change (their clinicians).

    They show patients' names and readings, so each patient listed is audited as a list read.
    """
    alerts = list(
        access.scope(user, access.CHANGE, Alert.objects.filter(acknowledged_at__isnull=True))
        .select_related("patient__organization", "observation")
        .order_by("-created_at")[:limit]
    )
    patients = {alert.patient_id: alert.patient for alert in alerts}
    if patients:
        record_patient_reads(actor=user, patients=patients.values())
    return alerts


def alert_for(*, user: User, alert_id: int) -> Alert:
    """An alert `user` may acknowledge (CHANGE on its patient), or 404; refusals audited."""
    alert = Alert.objects.select_related("patient__organization").filter(pk=alert_id).first()
    if alert is None or not access.can(user, access.CHANGE, alert.patient):
        record_event(
            actor=user,
            action=AuditEvent.Action.VIEW,
            outcome=AuditEvent.Outcome.DENIED,
            target=alert,
            patient_id=alert.patient_id if alert else None,
            region=alert.patient.organization.region if alert else "",
            detail={"requested_alert_id": alert_id},
        )
        raise Http404("No such alert")
    return alert


def patient_for_live_alert(user: User, patient_id: int) -> Patient | None:
    """For the live channel: the patient, if `user` is still one of their clinicians."""
    patient = Patient.objects.select_related("organization").filter(pk=patient_id).first()
    if patient is None or not access.can(user, access.CHANGE, patient):
        return None
    return patient
