"""Everyone in a session hears of it: in the app, by e-mail with a calendar invitation, by
SMS; and reminders 24 hours and 15 minutes before go exactly once.

The SMS gateway is outside the machine: these tests set SMS_BACKEND to the in-memory
backend of consults/sms.py, which keeps what would have been sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core import mail
from icalendar import Calendar

from accounts.models import Organization, Specialty, User
from consults import tasks
from consults.models import Appointment, Notification, Referral
from consults.services import notifications, scheduling
from consults.sms import ConsoleSmsBackend, LocmemSmsBackend
from tests.conftest import logged_in_client
from tests.consults.referrals import triaged_referral
from tests.consults.scheduling_clock import at
from tests.factories.ehr import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sms(settings: Any) -> list[tuple[str, str]]:
    settings.SMS_BACKEND = "consults.sms.LocmemSmsBackend"
    LocmemSmsBackend.outbox = []
    return LocmemSmsBackend.outbox


@pytest.fixture
def referral(
    frozen: dt.datetime, clinician: User, coordinator: User, cardiologist: User,
    cardiology: Specialty, clinic: Organization, office_hours: list,
) -> Referral:  # fmt: skip
    """A patient without an account (invited by phone), referred for hypertension."""
    patient = PatientFactory(organization=clinic, family_name="Osmonov", given_name="Tilek",
                             phone="+996700111222")  # fmt: skip
    referral = triaged_referral(
        clinician=clinician, coordinator=coordinator, specialist=cardiologist, patient=patient,
        specialty=cardiology,
    )  # fmt: skip
    referral.question = "Resistant hypertension I10"
    referral.save()
    return referral


@pytest.fixture
def appointment(
    referral: Referral, coordinator: User, sms: list, django_capture_on_commit_callbacks: Any
) -> Appointment:
    relative = scheduling.Guest(role="family", name="Aizada Osmonova",
                                email="aizada@example.kg", phone="+996555000111")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        return scheduling.book_appointment(
            referral=referral, booked_by=coordinator, starts_at=at(10, days=1),
            kind="doctor_patient", participants=[relative],
        )  # fmt: skip


def calendar_of(message: mail.EmailMessage) -> Calendar:
    [(filename, content, mimetype)] = message.attachments
    assert (filename, mimetype) == ("session.ics", "text/calendar")
    return Calendar.from_ical(content)


def event_of(message: mail.EmailMessage) -> Any:
    return calendar_of(message).walk("VEVENT")[0]


def test_booking_invites_everyone_in_the_app_by_email_and_by_sms(
    appointment: Appointment, sms: list, cardiologist: User, clinician: User
):
    assert set(Notification.objects.values_list("user__email", flat=True)) == {
        cardiologist.email, clinician.email,
    }  # fmt: skip
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        [cardiologist.email, clinician.email, "aizada@example.kg"]
    )
    for message in mail.outbox:
        calendar = calendar_of(message)
        assert calendar["METHOD"] == "REQUEST"
        event = calendar.walk("VEVENT")[0]
        assert str(event["UID"]) == notifications.calendar_uid(appointment)
        assert event["SEQUENCE"] == 0
        assert event.decoded("DTSTART") == at(10, days=1)
    assert sorted(phone for phone, _ in sms) == ["+996555000111", "+996700111222"]
    assert all("/join/" in text for _, text in sms)


def test_patients_and_relatives_get_a_join_link_and_no_diagnosis(appointment: Appointment,
                                                                  sms: list):  # fmt: skip
    [family_mail] = [m for m in mail.outbox if m.to == ["aizada@example.kg"]]
    family_text = family_mail.subject + family_mail.body + str(family_mail.attachments[0][1])

    assert "/join/" in family_mail.body
    for secret in ("hypertension", "I10", "Osmonov", "Cardiology", "cardiology"):
        assert secret not in family_text
        assert all(secret not in text for _, text in sms)
    assert appointment.participants.get(role="patient").links.count() == 1


def test_rescheduling_tells_everyone_with_the_same_uid_and_a_higher_sequence(
    appointment: Appointment, clinician: User, sms: list, django_capture_on_commit_callbacks: Any
):
    mail.outbox.clear()
    sms.clear()

    with django_capture_on_commit_callbacks(execute=True):
        scheduling.reschedule_appointment(appointment=appointment, actor=clinician,
                                          starts_at=at(11, days=1))  # fmt: skip

    assert len(mail.outbox) == 3
    for message in mail.outbox:
        assert calendar_of(message)["METHOD"] == "REQUEST"
        event = event_of(message)
        assert str(event["UID"]) == notifications.calendar_uid(appointment)
        assert event["SEQUENCE"] == 1
        assert event.decoded("DTSTART") == at(11, days=1)
    assert len(sms) == 2
    assert Notification.objects.filter(text__contains="moved to 05.03.2030 11:00").count() == 2


def test_cancelling_tells_everyone_with_a_calendar_cancellation(
    appointment: Appointment, coordinator: User, sms: list,
    django_capture_on_commit_callbacks: Any,
):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        scheduling.reschedule_appointment(appointment=appointment, actor=coordinator,
                                          starts_at=at(11, days=1))  # fmt: skip
    mail.outbox.clear()
    sms.clear()

    with django_capture_on_commit_callbacks(execute=True):
        scheduling.cancel_appointment(appointment=appointment, actor=coordinator,
                                      reason="Specialist ill")  # fmt: skip

    assert len(mail.outbox) == 3
    for message in mail.outbox:
        calendar = calendar_of(message)
        assert calendar["METHOD"] == "CANCEL"
        event = calendar.walk("VEVENT")[0]
        assert str(event["UID"]) == notifications.calendar_uid(appointment)
        assert event["SEQUENCE"] == 2
        assert event["STATUS"] == "CANCELLED"
    assert sorted(phone for phone, _ in sms) == ["+996555000111", "+996700111222"]
    assert all("cancelled" in text and "/join/" not in text for _, text in sms)
    assert Notification.objects.filter(text__contains="Reason: Specialist ill").count() == 2
    assert Referral.objects.get().status == "triaged"


def test_reminders_go_24_hours_and_15_minutes_before_exactly_once(
    appointment: Appointment, sms: list, time_machine: Any
):
    mail.outbox.clear()
    sms.clear()

    time_machine.move_to(at(9, 59), tick=False)  # 24 h 1 min before
    assert tasks.send_due_reminders.delay().get() == 0
    time_machine.move_to(at(10), tick=False)
    first, second = tasks.send_due_reminders.delay().get(), tasks.send_due_reminders.delay().get()
    reminders_24h = list(mail.outbox)
    time_machine.move_to(at(9, 40, days=1), tick=False)
    assert tasks.send_due_reminders.delay().get() == 0
    time_machine.move_to(at(9, 45, days=1), tick=False)
    third, fourth = tasks.send_due_reminders.delay().get(), tasks.send_due_reminders.delay().get()

    assert (first, second, third, fourth) == (1, 0, 1, 0)
    assert len(reminders_24h) == 3
    assert all("Reminder" in m.subject for m in reminders_24h)
    assert len(mail.outbox) == 6
    assert all("starts in 15 minutes" in m.subject for m in mail.outbox[3:])
    assert len(sms) == 4
    appointment.refresh_from_db()
    assert appointment.reminded_24h_at == at(10)
    assert appointment.reminded_15m_at == at(9, 45, days=1)


def test_a_moved_session_is_reminded_again_for_its_new_time(
    appointment: Appointment, coordinator: User, time_machine: Any,
    django_capture_on_commit_callbacks: Any,
):  # fmt: skip
    time_machine.move_to(at(10), tick=False)
    tasks.send_due_reminders.delay()

    with django_capture_on_commit_callbacks(execute=True):
        scheduling.reschedule_appointment(appointment=appointment, actor=coordinator,
                                          starts_at=at(11, days=1))  # fmt: skip
    time_machine.move_to(at(11), tick=False)

    assert tasks.send_due_reminders.delay().get() == 1


def test_cancelled_sessions_are_not_reminded(
    appointment: Appointment, coordinator: User, time_machine: Any
):
    scheduling.cancel_appointment(appointment=appointment, actor=coordinator, reason="x")
    time_machine.move_to(at(10), tick=False)

    assert tasks.send_due_reminders.delay().get() == 0


def test_the_reminder_task_runs_every_minute_from_beat(settings: Any):
    entry = settings.CELERY_BEAT_SCHEDULE["appointment-reminders"]

    assert entry == {"task": "consults.tasks.send_due_reminders", "schedule": 60.0}


def test_users_read_their_notifications_and_the_unread_count_falls(
    appointment: Appointment, clinician: User
):
    client = logged_in_client(clinician)
    assert notifications.unread_notifications_count(clinician) == 1

    page = client.get("/consults/notifications/").content.decode()
    client.post("/consults/notifications/")

    assert "is booked for 05.03.2030 10:00" in page
    assert notifications.unread_notifications_count(clinician) == 0


def test_the_console_sms_backend_writes_the_message(capsys: Any):
    ConsoleSmsBackend().send("+996700000000", "Hello")

    assert "SMS to +996700000000: Hello" in capsys.readouterr().out


def test_the_header_badge_tag_counts_unread_notifications(
    appointment: Appointment, clinician: User
):
    from django.template import Context, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = clinician
    badge = Template(
        "{% load scheduling %}{% unread_notifications_count as unread %}[{{ unread }}]"
    )

    assert badge.render(Context({"request": request})) == "[1]"
