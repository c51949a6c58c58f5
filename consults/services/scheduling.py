"""Scheduling: specialists' availability, free slots, booking, rescheduling, cancellation.

Times are stored in UTC; availability rules are wall-clock times in the specialist's own
time zone (`user.time_zone`). Slots lie on each rule's grid (start + n × slot_minutes), so
two people booking "the same slot" insert the same (specialist, starts_at) row and the
database's partial unique constraint lets exactly one of them in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event, record_patient_reads
from consults.models import (
    Appointment,
    AvailabilityException,
    AvailabilityRule,
    Participant,
    Referral,
    ReferralEvent,
)
from consults.policies import BOOK
from consults.services.referrals import move_referral

Role = Participant.Role
GUEST_ROLES = (Role.INTERPRETER, Role.FAMILY)


@dataclass(frozen=True)
class Slot:
    starts_at: dt.datetime
    ends_at: dt.datetime


@dataclass(frozen=True)
class Guest:
    """Someone without an account invited to a session: an interpreter or a relative."""

    role: str
    name: str
    email: str = ""
    phone: str = ""


def zone_of(user: User) -> ZoneInfo:
    return ZoneInfo(user.time_zone or settings.TIME_ZONE)


# --- Availability ----------------------------------------------------------------------------


def _ensure_owner(
    specialist: User, action: str, row: AvailabilityRule | AvailabilityException
) -> None:
    if not access.can(specialist, action, row):
        raise PermissionDenied


def _save_if_allowed(specialist: User, row: AvailabilityRule | AvailabilityException) -> None:
    # Checked on the saved row, inside a savepoint that a refusal rolls back: the policy
    # (Q(specialist=user)) compares a user object, which `access.can_create` cannot check
    # against unsaved values.
    with transaction.atomic():
        row.save()
        _ensure_owner(specialist, access.CREATE, row)


@transaction.atomic
def add_availability_rule(
    *,
    specialist: User,
    weekday: int,
    start_time: dt.time,
    end_time: dt.time,
    slot_minutes: int = 30,
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
) -> AvailabilityRule:
    """Weekly consulting hours (wall-clock times in the specialist's time zone)."""
    rule = AvailabilityRule(
        specialist=specialist, weekday=weekday, start_time=start_time, end_time=end_time,
        slot_minutes=slot_minutes, valid_from=valid_from, valid_until=valid_until,
    )  # fmt: skip
    if not 0 <= weekday <= 6:
        raise ValidationError(_("Choose a day of the week."))
    if not 5 <= slot_minutes <= 240:
        raise ValidationError(_("A slot lasts from 5 to 240 minutes."))
    start = dt.datetime.combine(dt.date.min, start_time)
    if start + dt.timedelta(minutes=slot_minutes) > dt.datetime.combine(dt.date.min, end_time):
        raise ValidationError(_("The hours must hold at least one slot."))
    if valid_from and valid_until and valid_until < valid_from:
        raise ValidationError(_("The rule must end after it starts."))
    _save_if_allowed(specialist, rule)
    return rule


@transaction.atomic
def delete_availability_rule(*, specialist: User, rule: AvailabilityRule) -> None:
    _ensure_owner(specialist, access.DELETE, rule)
    rule.delete()


@transaction.atomic
def add_availability_exception(
    *, specialist: User, starts_at: dt.datetime, ends_at: dt.datetime, reason: str = ""
) -> AvailabilityException:
    """Leave or a holiday: no slots from `starts_at` until `ends_at`. Sessions already booked
    in that time stay booked (cancel them one by one, so that everyone is told)."""
    exception = AvailabilityException(
        specialist=specialist, starts_at=starts_at, ends_at=ends_at, reason=reason
    )
    if ends_at <= starts_at:
        raise ValidationError(_("The absence must end after it starts."))
    _save_if_allowed(specialist, exception)
    return exception


@transaction.atomic
def delete_availability_exception(*, specialist: User, exception: AvailabilityException) -> None:
    _ensure_owner(specialist, access.DELETE, exception)
    exception.delete()


# --- Free slots ------------------------------------------------------------------------------


def _overlaps(start: dt.datetime, end: dt.datetime, periods: list[tuple]) -> bool:
    return any(start < period_end and period_start < end for period_start, period_end in periods)


def free_slots(*, specialist: User, start: dt.datetime, end: dt.datetime) -> list[Slot]:
    """The specialist's bookable slots starting in [start, end): from the weekly rules, minus
    absences, minus booked sessions, minus the past. Sorted; times are aware (UTC)."""
    start = max(start, timezone.now())
    if end <= start:
        return []
    zone = zone_of(specialist)
    rules = list(AvailabilityRule.objects.filter(specialist=specialist))
    # A slot may begin before `end` and last past it: look a day further for overlaps.
    absences = list(
        AvailabilityException.objects.filter(
            specialist=specialist, starts_at__lt=end + dt.timedelta(days=1), ends_at__gt=start
        ).values_list("starts_at", "ends_at")
    )
    booked = list(
        Appointment.objects.filter(
            specialist=specialist,
            status=Appointment.Status.BOOKED,
            starts_at__lt=end + dt.timedelta(days=1),
            ends_at__gt=start,
        ).values_list("starts_at", "ends_at")
    )
    slots: dict[dt.datetime, Slot] = {}
    day, last_day = start.astimezone(zone).date(), end.astimezone(zone).date()
    while day <= last_day:
        for rule in rules:
            if rule.weekday != day.weekday():
                continue
            if (rule.valid_from and day < rule.valid_from) or (
                rule.valid_until and day > rule.valid_until
            ):
                continue
            step = dt.timedelta(minutes=rule.slot_minutes)
            slot_start = dt.datetime.combine(day, rule.start_time, tzinfo=zone)
            rule_end = dt.datetime.combine(day, rule.end_time, tzinfo=zone)
            while slot_start + step <= rule_end:
                slot_end = slot_start + step
                if (
                    start <= slot_start < end
                    and not _overlaps(slot_start, slot_end, absences)
                    and not _overlaps(slot_start, slot_end, booked)
                ):
                    utc_start = slot_start.astimezone(dt.UTC)
                    slots.setdefault(utc_start, Slot(utc_start, slot_end.astimezone(dt.UTC)))
                slot_start = slot_end
        day += dt.timedelta(days=1)
    return [slots[key] for key in sorted(slots)]


def _free_slot_at(specialist: User, starts_at: dt.datetime) -> Slot:
    for slot in free_slots(
        specialist=specialist, start=starts_at, end=starts_at + dt.timedelta(seconds=1)
    ):
        if slot.starts_at == starts_at:
            return slot
    if starts_at < timezone.now():
        raise ValidationError(_("This time has passed. Choose a free slot in the future."))
    raise ValidationError(_("This time is not a free slot of the specialist."))


# --- Booking ---------------------------------------------------------------------------------

# Lazy: a module-level message must be translated when shown, not when imported.
SLOT_TAKEN = gettext_lazy("This slot was booked by someone else a moment ago. Choose another slot.")


def _user_participants(referral: Referral, kind: str) -> list[tuple[str, User]]:
    people = [
        (Role.SPECIALIST, referral.specialist),
        (Role.CLINICIAN, referral.referring_clinician),
    ]
    if kind == Appointment.Kind.DOCTOR_PATIENT and referral.patient.user_id:
        people.append((Role.PATIENT, referral.patient.user))
    return people


def _add_participants(appointment: Appointment, guests: list[Guest]) -> None:
    referral = appointment.referral
    rows = [
        Participant(appointment=appointment, user=user, role=role, name=str(user),
                    email=user.email, phone=user.phone, starts_at=appointment.starts_at)
        for role, user in _user_participants(referral, appointment.kind)
    ]  # fmt: skip
    if appointment.kind == Appointment.Kind.DOCTOR_PATIENT and not referral.patient.user_id:
        patient = referral.patient
        rows.append(Participant(appointment=appointment, role=Role.PATIENT,
                                name=patient.full_name, phone=patient.phone,
                                starts_at=appointment.starts_at))  # fmt: skip
    for guest in guests:
        if guest.role not in GUEST_ROLES or not guest.name.strip():
            raise ValidationError(_("A guest is an interpreter or a family member, with a name."))
        if not (guest.email.strip() or guest.phone.strip()):
            raise ValidationError(_("Give the guest's e-mail or phone, to send them the link."))
        rows.append(Participant(appointment=appointment, role=guest.role, name=guest.name.strip(),
                                email=guest.email.strip(), phone=guest.phone.strip(),
                                starts_at=appointment.starts_at))  # fmt: skip
    _refuse_double_booking(appointment.starts_at, [row.user for row in rows if row.user])
    try:
        with transaction.atomic():
            Participant.objects.bulk_create(rows)
    except IntegrityError:
        # Lost a race against another booking of the same person.
        raise ValidationError(SLOT_TAKEN) from None


def _refuse_double_booking(starts_at: dt.datetime, users: list[User]) -> None:
    busy = Participant.objects.filter(user__in=users, starts_at=starts_at, is_active=True)
    busy = busy.select_related("user").first()
    if busy is not None:
        raise ValidationError(
            _("%(name)s already has a session at that time.") % {"name": busy.user}
        )


def _local(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


def _queue_notifications(appointment: Appointment, event: str) -> None:
    from consults.tasks import send_appointment_notifications

    transaction.on_commit(lambda: send_appointment_notifications.delay(appointment.pk, event))


@transaction.atomic
def book_appointment(
    *,
    referral: Referral,
    booked_by: User,
    starts_at: dt.datetime,
    kind: str,
    participants: list[Guest] | None = None,
) -> Appointment:
    """Book a session of a triaged referral in one of its specialist's free slots.

    Invites the specialist, the referring clinician, for a doctor–patient session the
    patient (their account, or the record's name and phone), and `participants` (guests).
    A referral triaged for a written opinion becomes a live one: booking a session is the
    decision to talk after all. The referral moves to "scheduled"; everyone is notified.
    """
    if not access.can(booked_by, BOOK, referral):
        raise PermissionDenied
    if referral.status != Referral.Status.TRIAGED or referral.specialist_id is None:
        raise ValidationError(_("Only a triaged referral with a specialist can be booked."))
    if kind not in Appointment.Kind.values:
        raise ValidationError(_("Choose the kind of session."))
    slot = _free_slot_at(referral.specialist, starts_at)
    appointment = Appointment(
        referral=referral, specialist=referral.specialist, kind=kind,
        starts_at=slot.starts_at, ends_at=slot.ends_at, booked_by=booked_by,
    )  # fmt: skip
    try:
        with transaction.atomic():
            appointment.save()
    except IntegrityError:
        raise ValidationError(SLOT_TAKEN) from None
    _add_participants(appointment, participants or [])
    note = _("session %(at)s") % {"at": _local(slot.starts_at)}
    if referral.mode != Referral.Mode.LIVE:
        referral.mode = Referral.Mode.LIVE
        note += " · " + _("switched to a live session")
    move_referral(referral=referral, to=Referral.Status.SCHEDULED, actor=booked_by, note=note)
    referral.save(update_fields=["status", "mode"])
    record_event(actor=booked_by, action=AuditEvent.Action.CREATE, target=appointment,
                 patient_id=referral.patient_id, region=referral.region)  # fmt: skip
    _queue_notifications(appointment, "invitation")
    return appointment


def _ensure_can_change(user: User, appointment: Appointment) -> None:
    access.ensure_can(user, access.CHANGE, appointment)
    if appointment.status != Appointment.Status.BOOKED:
        raise ValidationError(_("Only a booked session can be changed."))


def _record_change(actor: User, appointment: Appointment, detail: dict) -> None:
    # These events also count the calendar SEQUENCE (see notifications.sequence_of).
    record_event(actor=actor, action=AuditEvent.Action.UPDATE, target=appointment,
                 patient_id=appointment.referral.patient_id,
                 region=appointment.referral.region, detail=detail)  # fmt: skip


@transaction.atomic
def reschedule_appointment(
    *, appointment: Appointment, actor: User, starts_at: dt.datetime
) -> Appointment:
    """Move a booked session to another free slot of its specialist; everyone is told."""
    _ensure_can_change(actor, appointment)
    slot = _free_slot_at(appointment.specialist, starts_at)
    old_start = appointment.starts_at
    appointment.starts_at, appointment.ends_at = slot.starts_at, slot.ends_at
    # Reminders are for the new time.
    appointment.reminded_24h_at = appointment.reminded_15m_at = None
    participants = appointment.participants.filter(is_active=True)
    _refuse_double_booking(slot.starts_at, [p.user for p in participants if p.user_id])
    try:
        with transaction.atomic():
            appointment.save()
            participants.update(starts_at=slot.starts_at)
    except IntegrityError:
        raise ValidationError(SLOT_TAKEN) from None
    ReferralEvent.objects.create(
        referral=appointment.referral, actor=actor, from_status=Referral.Status.SCHEDULED,
        to_status=Referral.Status.SCHEDULED,
        note=_("session moved to %(at)s") % {"at": _local(slot.starts_at)},
    )  # fmt: skip
    moved = {"from": old_start.isoformat(), "to": slot.starts_at.isoformat()}
    _record_change(actor, appointment, moved)
    _queue_notifications(appointment, "change")
    return appointment


@transaction.atomic
def cancel_appointment(*, appointment: Appointment, actor: User, reason: str) -> Appointment:
    """Cancel a booked session: the slot is free again, the referral goes back to triaged
    (to be booked again, answered in writing or cancelled), everyone is told."""
    _ensure_can_change(actor, appointment)
    if not reason.strip():
        raise ValidationError(_("Say why the session is cancelled."))
    appointment.status, appointment.cancel_reason = Appointment.Status.CANCELLED, reason.strip()
    appointment.save(update_fields=["status", "cancel_reason"])
    appointment.participants.update(is_active=False)
    referral = appointment.referral
    if referral.status == Referral.Status.SCHEDULED:
        move_referral(
            referral=referral, to=Referral.Status.TRIAGED, actor=actor, note=reason.strip()
        )
        referral.save(update_fields=["status"])
    _record_change(actor, appointment, {"status": "cancelled"})
    _queue_notifications(appointment, "cancellation")
    return appointment


# --- Reads -----------------------------------------------------------------------------------


def appointments_visible_to(user: User) -> QuerySet[Appointment]:
    return access.scope(
        user,
        access.VIEW,
        Appointment.objects.select_related("referral__patient__organization", "specialist"),
    )


def appointments_today(user: User) -> list[Appointment]:
    """The user's booked sessions of today (in their time zone): their day on the dashboard.
    Each shows its patient, so each is an audited read."""
    zone = zone_of(user)
    midnight = dt.datetime.combine(timezone.now().astimezone(zone).date(), dt.time(), tzinfo=zone)
    appointments = list(
        appointments_visible_to(user)
        .filter(
            Q(specialist=user) | Q(participants__user=user, participants__is_active=True),
            status=Appointment.Status.BOOKED,
            starts_at__gte=midnight,
            starts_at__lt=midnight + dt.timedelta(days=1),
        )
        .distinct()
        .order_by("starts_at")
    )
    record_patient_reads(actor=user, patients={a.referral.patient for a in appointments})
    return appointments


def appointment_for(*, user: User, appointment_id: int) -> Appointment:
    appointment = appointments_visible_to(user).filter(pk=appointment_id).first()
    if appointment is None:
        from django.http import Http404

        raise Http404("No such appointment")
    return appointment
