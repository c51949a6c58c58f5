"""The patient's health diary: recording readings, the care team's target ranges, and alerts.

A diary entry is an Observation (source "patient") keyed by the UUID the browser gave it when
the patient pressed Save, so an entry queued offline and sent twice (a retry after a lost
answer, two tabs) is stored once, and raises at most one alert (Alert is one-to-one with the
observation).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from ehr.diary.broadcast import broadcast_alert_acknowledged, broadcast_alert_raised
from ehr.diary.measures import SPECS, MeasureSpec, clean_values, observation_fields, spec_for
from ehr.models import Alert, DiaryThreshold, Observation, Patient

DIARY_SOURCE_SYSTEM = "diary"
KEEP_DIARY = "keep_diary"

# A phone's clock may be a little ahead; a reading dated further ahead than this, or older
# than a year, is a wrong date rather than a late upload.
FUTURE_TOLERANCE = dt.timedelta(days=1)
OLDEST_ENTRY = dt.timedelta(days=366)


def _fmt(number: Decimal | float | int) -> str:
    return f"{Decimal(str(number)).normalize():f}"


def _clean_uuid(client_uuid: str | uuid.UUID) -> str:
    try:
        return str(uuid.UUID(str(client_uuid)))
    except (ValueError, TypeError, AttributeError):
        raise ValidationError(
            {"uuid": _("The entry has no valid identifier.")}, code="bad_uuid"
        ) from None


def _clean_measured_at(measured_at: dt.datetime | None) -> dt.datetime:
    now = timezone.now()
    if measured_at is None:
        return now
    if timezone.is_naive(measured_at):
        raise ValidationError({"measured_at": _("The time of the reading has no time zone.")})
    if measured_at > now + FUTURE_TOLERANCE:
        raise ValidationError(
            {"measured_at": _("The reading is dated in the future: check the phone's date.")}
        )
    if measured_at < now - OLDEST_ENTRY:
        raise ValidationError({"measured_at": _("The reading is more than a year old.")})
    # Within the tolerance, "a few minutes from now" means "now" on a fast clock.
    return min(measured_at, now)


def diary_entry_for(*, patient: Patient, client_uuid: str) -> Observation | None:
    return Observation.objects.filter(
        patient=patient, source_system=DIARY_SOURCE_SYSTEM, source_id=client_uuid
    ).first()


def _limits(spec: MeasureSpec, threshold: DiaryThreshold) -> list[tuple[str, Any, Any]]:
    """(field name, low, high) per number; for blood pressure the second pair is diastolic."""
    limits = [(spec.fields[0].name, threshold.low, threshold.high)]
    if spec.has_two_values:
        limits.append((spec.fields[1].name, threshold.second_low, threshold.second_high))
    return limits


def outside_range(
    spec: MeasureSpec, cleaned: dict[str, Any], threshold: DiaryThreshold | None
) -> tuple[list[str], str]:
    """Why a reading is outside the range (short, language-neutral: "SYS > 140"), and its
    FHIR interpretation: H, L, A (both ways), N (inside), or "" when no range is set."""
    if threshold is None or spec.is_text:
        return [], ""
    reasons: list[str] = []
    directions: set[str] = set()
    for name, low, high in _limits(spec, threshold):
        prefix = {"systolic": "SYS ", "diastolic": "DIA "}.get(name, "")
        value = cleaned[name]
        if high is not None and value > high:
            reasons.append(f"{prefix}> {_fmt(high)}")
            directions.add(Observation.Interpretation.HIGH)
        elif low is not None and value < low:
            reasons.append(f"{prefix}< {_fmt(low)}")
            directions.add(Observation.Interpretation.LOW)
    if not directions:
        return [], Observation.Interpretation.NORMAL
    if len(directions) > 1:
        return reasons, Observation.Interpretation.ABNORMAL
    return reasons, directions.pop()


@transaction.atomic
def record_diary_entry(
    *,
    patient: Patient,
    user: User,
    measure: str,
    values: dict[str, Any],
    client_uuid: str | uuid.UUID,
    measured_at: dt.datetime | None,
) -> tuple[Observation, bool]:
    """Store one reading the patient took, once per `client_uuid`; returns (entry, created).

    An entry already stored under that UUID is returned as it is, whatever the values sent
    this time: the browser retries exactly what it queued. A reading outside the patient's
    target range raises one Alert, announced live and by e-mail to the patient's clinicians
    once the transaction has committed. Raises PermissionDenied unless `user` keeps this
    patient's diary, ValidationError (with a message for the patient) for implausible values.
    """
    if not access.can(user, KEEP_DIARY, patient):
        raise PermissionDenied
    source_id = _clean_uuid(client_uuid)
    existing = diary_entry_for(patient=patient, client_uuid=source_id)
    if existing is not None:
        return existing, False
    spec = spec_for(measure)
    cleaned = clean_values(measure, values)
    effective_at = _clean_measured_at(measured_at)
    threshold = DiaryThreshold.objects.filter(patient=patient, measure=measure).first()
    reasons, interpretation = outside_range(spec, cleaned, threshold)
    try:
        # A savepoint: when the same entry arrives twice at the same moment, the loser's
        # insert fails on the unique constraint and it returns the winner's row instead.
        with transaction.atomic():
            observation = Observation.objects.create(
                patient=patient,
                recorded_by=user,
                source=Observation.Source.PATIENT,
                source_system=DIARY_SOURCE_SYSTEM,
                source_id=source_id,
                effective_at=effective_at,
                interpretation=interpretation,
                reference_low=threshold.low if threshold else None,
                reference_high=threshold.high if threshold else None,
                **observation_fields(measure, cleaned),
            )
    except IntegrityError:
        existing = diary_entry_for(patient=patient, client_uuid=source_id)
        if existing is None:
            raise
        return existing, False
    region = patient.organization.region
    record_event(
        actor=user,
        action=AuditEvent.Action.CREATE,
        target=observation,
        patient_id=patient.pk,
        region=region,
        detail={"source": DIARY_SOURCE_SYSTEM, "measure": measure, "alert": bool(reasons)},
    )
    if reasons:
        _raise_alert(observation=observation, measure=measure, reasons=reasons)
    return observation, True


def _raise_alert(*, observation: Observation, measure: str, reasons: list[str]) -> Alert:
    from ehr.tasks import send_diary_alert_email  # tasks import services: import late

    alert = Alert.objects.create(
        patient=observation.patient,
        observation=observation,
        measure=measure,
        message=f"{observation.value_display} ({', '.join(reasons)})"[:300],
    )
    # robust: the entry is stored whatever happens to the notifications; a failure is logged
    # and the alert still waits on the dashboard.
    transaction.on_commit(lambda: broadcast_alert_raised(alert.pk), robust=True)
    transaction.on_commit(lambda: send_diary_alert_email.delay(alert.pk), robust=True)
    return alert


def _clean_limit(value: Any, *, field_label: str, low: Decimal, high: Decimal) -> Decimal | None:
    if value in (None, ""):
        return None
    number = Decimal(str(value).replace(",", "."))
    if not low <= number <= high:
        raise ValidationError(
            _("%(what)s must be between %(low)s and %(high)s.")
            % {"what": field_label, "low": _fmt(low), "high": _fmt(high)}
        )
    return number


@transaction.atomic
def set_threshold(
    *,
    patient: Patient,
    user: User,
    measure: str,
    low: Decimal | None,
    high: Decimal | None,
    second_low: Decimal | None = None,
    second_high: Decimal | None = None,
) -> DiaryThreshold | None:
    """Set the target range of one measure (blood pressure: systolic, then diastolic).

    A clinician who may change the patient sets it; leaving every bound empty removes the
    range (returns None). Readings already stored are not re-judged.
    """
    if not access.can(user, access.CHANGE, patient):
        raise PermissionDenied
    spec = spec_for(measure)
    if spec.is_text:
        raise ValidationError({"measure": _("Symptoms have no target range.")})
    pairs = [("low", "high", low, high, spec.fields[0])]
    if spec.has_two_values:
        pairs.append(("second_low", "second_high", second_low, second_high, spec.fields[1]))
    bounds: dict[str, Decimal | None] = {}
    errors: dict[str, Any] = {}
    for low_name, high_name, low_value, high_value, field in pairs:
        try:
            cleaned = [
                _clean_limit(value, field_label=str(field.label), low=field.low, high=field.high)
                for value in (low_value, high_value)
            ]
        except ValidationError as error:
            errors[low_name] = error
            continue
        if None not in cleaned and cleaned[0] > cleaned[1]:
            errors[high_name] = ValidationError(_("The highest value is below the lowest."))
        bounds[low_name], bounds[high_name] = cleaned
    if errors:
        raise ValidationError(errors)
    existing = DiaryThreshold.objects.filter(patient=patient, measure=measure).first()
    audit = {"patient_id": patient.pk, "region": patient.organization.region}
    if all(value is None for value in bounds.values()):
        if existing is not None:
            record_event(actor=user, action=AuditEvent.Action.DELETE, target=existing, **audit,
                         detail={"measure": measure})  # fmt: skip
            existing.delete()
        return None
    threshold, created = DiaryThreshold.objects.update_or_create(
        patient=patient,
        measure=measure,
        defaults={"set_by": user, "second_low": None, "second_high": None, **bounds},
    )
    record_event(
        actor=user,
        action=AuditEvent.Action.CREATE if created else AuditEvent.Action.UPDATE,
        target=threshold,
        detail={"measure": measure, **{k: _fmt(v) if v is not None else None
                                       for k, v in bounds.items()}},
        **audit,
    )  # fmt: skip
    return threshold


@transaction.atomic
def acknowledge_alert(*, alert: Alert, user: User) -> Alert:
    """A clinician of the patient has seen the alert; it leaves every dashboard. Pressing the
    button twice (or two clinicians at once) keeps the first acknowledgement."""
    if not access.can(user, access.CHANGE, alert.patient):
        raise PermissionDenied
    alert = (
        Alert.objects.select_for_update().select_related("patient__organization").get(pk=alert.pk)
    )
    if not alert.is_open:
        return alert
    alert.acknowledged_by = user
    alert.acknowledged_at = timezone.now()
    alert.save(update_fields=["acknowledged_by", "acknowledged_at"])
    record_event(
        actor=user,
        action=AuditEvent.Action.UPDATE,
        target=alert,
        patient_id=alert.patient_id,
        region=alert.patient.organization.region,
        detail={"acknowledged": True},
    )
    transaction.on_commit(lambda: broadcast_alert_acknowledged(alert.pk), robust=True)
    return alert


def measures_with_thresholds() -> list[str]:
    return [measure for measure, spec in SPECS.items() if not spec.is_text]
