"""Telling the participants of a session: invitations, changes, cancellations, reminders.

Each message goes (1) in the app as a `Notification` to participants with an account,
(2) by e-mail, with an iCalendar attachment for invitations, changes (METHOD:REQUEST) and
cancellations (METHOD:CANCEL) that carries one UID per appointment and a SEQUENCE that grows
with every change, so calendar programs update the one event, and (3) by SMS through the
`SMS_BACKEND` (consults/sms.py). Participants without an account (patients, relatives,
interpreters) get a fresh join link in each message that is not a cancellation (issuing one
revokes the earlier ones, so the latest message always holds the working link).

E-mail and SMS are not confidential: messages name no patient and no diagnosis, and the
messages to patients and guests name neither the referral's question nor its reason.
"""

from __future__ import annotations

import datetime as dt
from email.utils import parseaddr
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override
from icalendar import Calendar, Event, vCalAddress

from accounts.models import AuditEvent, User
from consults.models import Appointment, Notification, Participant
from consults.services.links import issue_join_link
from consults.sms import send_sms

INVITATION, CHANGE, CANCELLATION = "invitation", "change", "cancellation"
REMINDER_24H, REMINDER_15M = "reminder_24h", "reminder_15m"
EVENTS = (INVITATION, CHANGE, CANCELLATION, REMINDER_24H, REMINDER_15M)
STAFF_ROLES = (Participant.Role.SPECIALIST, Participant.Role.CLINICIAN)


def sequence_of(appointment: Appointment) -> int:
    """The iCalendar SEQUENCE: how many times the appointment was changed (rescheduled or
    cancelled). Appointment has no counter column; the append-only audit log has one
    UPDATE event per change, which only ever grows."""
    return AuditEvent.objects.filter(
        object_type="consults.appointment",
        object_id=str(appointment.pk),
        action=AuditEvent.Action.UPDATE,
    ).count()


def calendar_uid(appointment: Appointment) -> str:
    return f"appointment-{appointment.pk}@{urlparse(settings.SITE_URL).hostname or 'telemed'}"


def build_ics(*, appointment: Appointment, method: str, summary: str, attendee: str) -> bytes:
    """One VEVENT in a calendar with `method` (REQUEST or CANCEL, RFC 5546)."""
    calendar = Calendar()
    calendar.add("prodid", "-//Telemed//Consults//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", calendar_uid(appointment))
    event.add("dtstamp", timezone.now())
    event.add("dtstart", appointment.starts_at)
    event.add("dtend", appointment.ends_at)
    event.add("sequence", sequence_of(appointment))
    event.add("summary", summary)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("organizer", vCalAddress("mailto:" + parseaddr(settings.DEFAULT_FROM_EMAIL)[1]))
    event.add("attendee", vCalAddress("mailto:" + attendee))
    calendar.add_component(event)
    return calendar.to_ical()


def _text(event: str, *, appointment: Appointment, when: str, is_staff: bool) -> str:
    """The message, in the active language. Staff read the referral number; patients and
    guests read only the specialist's name and the time."""
    if is_staff:
        what = _("Telemed session of referral #%(id)s with %(specialist)s") % {
            "id": appointment.referral_id,
            "specialist": appointment.specialist,
        }
    else:
        what = _("Your Telemed video consultation with %(specialist)s") % {
            "specialist": appointment.specialist
        }
    texts = {
        INVITATION: _("%(what)s is booked for %(when)s."),
        CHANGE: _("%(what)s is moved to %(when)s."),
        CANCELLATION: _("%(what)s on %(when)s is cancelled."),
        REMINDER_24H: _("Reminder: %(what)s is on %(when)s."),
        REMINDER_15M: _("%(what)s starts in 15 minutes, at %(when)s."),
    }
    text = texts[event] % {"what": what, "when": when}
    if event == CANCELLATION and is_staff and appointment.cancel_reason:
        text += " " + _("Reason: %(reason)s") % {"reason": appointment.cancel_reason}
    return text


def _notify_participant(appointment: Appointment, participant: Participant, event: str) -> None:
    user: User | None = participant.user
    zone = ZoneInfo(user.time_zone if user else settings.TIME_ZONE)
    with override((user.language if user else "") or settings.LANGUAGE_CODE):
        local = appointment.starts_at.astimezone(zone)
        when = f"{local:%d.%m.%Y %H:%M} ({zone.key})"
        text = _text(
            event, appointment=appointment, when=when, is_staff=participant.role in STAFF_ROLES
        )
        if user is not None:
            link = settings.SITE_URL + appointment.referral.get_absolute_url()
            Notification.objects.create(user=user, text=text[:300], url=link)
        elif event != CANCELLATION:
            link = issue_join_link(participant=participant)
        else:
            link = ""
        body = f"{text}\n\n{link}" if link else text
        if link and user is None:
            body = f"{text}\n\n" + _("Join from your phone or computer: %(url)s") % {"url": link}
        email = participant.email or (user.email if user else "")
        if email:
            message = EmailMessage(subject=text, body=body, to=[email])
            if event in (INVITATION, CHANGE, CANCELLATION):
                method = "CANCEL" if event == CANCELLATION else "REQUEST"
                summary = _("Telemed session with %(specialist)s") % {
                    "specialist": appointment.specialist
                }
                ics = build_ics(
                    appointment=appointment, method=method, summary=summary, attendee=email
                )
                message.attach("session.ics", ics.decode(), "text/calendar")
            message.send()
        if participant.phone:
            send_sms(phone=participant.phone, text=f"{text} {link}".strip())


def notify_appointment(*, appointment: Appointment, event: str) -> None:
    """Tell every participant of `appointment` about `event` (one of EVENTS)."""
    if event not in EVENTS:
        raise ValueError(event)
    participants = appointment.participants.select_related("user")
    if event != CANCELLATION:
        participants = participants.filter(is_active=True)
    for participant in participants:
        _notify_participant(appointment, participant, event)


# Reminder kinds: the column that records it, the event, and the window of start times
# (later than now + floor, no later than now + lead) in which it is due.
REMINDERS = (
    ("reminded_24h_at", REMINDER_24H, dt.timedelta(hours=24), dt.timedelta(minutes=15)),
    ("reminded_15m_at", REMINDER_15M, dt.timedelta(minutes=15), dt.timedelta(0)),
)


def send_due_reminders(*, now: dt.datetime | None = None) -> int:
    """Send the reminders that are due; returns how many appointments were reminded.

    Each reminder is claimed with one conditional UPDATE (`... WHERE reminded_x_at IS NULL`)
    before it is sent: the database runs it atomically, so of two beat runs or two workers
    exactly one claims it. A reminder whose sending fails after the claim is not retried (at
    most once: a lost reminder is better than a repeated one every minute).
    """
    now = now or timezone.now()
    sent = 0
    for column, event, lead, floor in REMINDERS:
        unclaimed = {f"{column}__isnull": True, "status": Appointment.Status.BOOKED}
        due = Appointment.objects.filter(
            starts_at__gt=now + floor, starts_at__lte=now + lead, **unclaimed
        ).values_list("pk", flat=True)
        for appointment_id in list(due):
            claimed = Appointment.objects.filter(pk=appointment_id, **unclaimed).update(
                **{column: now}
            )
            if claimed:
                appointment = Appointment.objects.select_related("specialist").get(
                    pk=appointment_id
                )
                notify_appointment(appointment=appointment, event=event)
                sent += 1
    return sent


# --- In-app notifications --------------------------------------------------------------------


def unread_notifications_count(user: User) -> int:
    if not getattr(user, "is_authenticated", False):
        return 0
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def notifications_for(user: User, *, limit: int = 100) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")[:limit]


def mark_notifications_read(*, user: User) -> int:
    """Mark all of the user's notifications read (one can only read one's own)."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )
