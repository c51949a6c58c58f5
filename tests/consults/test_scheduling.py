"""Availability and free slots: rules minus absences, bookings and the past, shown in each
viewer's time zone. The shared fixtures are in conftest.py."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.models import Membership, Organization, User
from consults.models import AvailabilityRule, Referral
from consults.services import scheduling
from tests.conftest import logged_in_client
from tests.consults.scheduling_clock import NOW, at
from tests.factories.accounts import member

pytestmark = pytest.mark.django_db
MOSCOW = ZoneInfo("Europe/Moscow")


def starts(slots: list[scheduling.Slot]) -> list[dt.datetime]:
    return [slot.starts_at for slot in slots]


def test_slots_follow_the_weekly_rule_on_its_grid(frozen: dt.datetime, cardiologist: User,
                                                   office_hours: list):  # fmt: skip
    slots = scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(23, 59))

    assert starts(slots) == [at(10), at(10, 30), at(11), at(11, 30)]
    assert slots[0].ends_at == at(10, 30)


def test_slots_in_the_past_are_not_offered(time_machine: Any, cardiologist: User,
                                           office_hours: list):  # fmt: skip
    time_machine.move_to(at(10, 40), tick=False)

    slots = scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(23, 59))

    assert starts(slots) == [at(11), at(11, 30)]


def test_absences_remove_slots(frozen: dt.datetime, cardiologist: User, office_hours: list):
    scheduling.add_availability_exception(
        specialist=cardiologist, starts_at=at(10, 15), ends_at=at(11), reason="Conference"
    )
    scheduling.add_availability_exception(
        specialist=cardiologist, starts_at=at(0, days=1), ends_at=at(0, days=2), reason="Leave"
    )

    slots = scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(0, days=3))

    assert starts(slots) == [at(11), at(11, 30), at(10, days=2), at(10, 30, days=2),
                             at(11, days=2), at(11, 30, days=2)]  # fmt: skip


def test_booked_slots_are_not_free(referral: Referral, coordinator: User, cardiologist: User):
    scheduling.book_appointment(referral=referral, booked_by=coordinator, starts_at=at(10, 30),
                                kind="doctor_doctor")  # fmt: skip

    slots = scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(23, 59))

    assert starts(slots) == [at(10), at(11), at(11, 30)]


def test_rules_count_in_the_specialists_own_time_zone(frozen: dt.datetime, cardiologist: User):
    cardiologist.time_zone = "Europe/Moscow"
    cardiologist.save()
    scheduling.add_availability_rule(specialist=cardiologist, weekday=0, start_time=dt.time(10),
                                     end_time=dt.time(11), slot_minutes=60)  # fmt: skip

    slots = scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(23, 59))

    assert starts(slots) == [dt.datetime(2030, 3, 4, 10, tzinfo=MOSCOW)]
    assert starts(slots) == [at(13)]


def test_rules_respect_their_validity(frozen: dt.datetime, cardiologist: User):
    scheduling.add_availability_rule(
        specialist=cardiologist, weekday=0, start_time=dt.time(10), end_time=dt.time(11),
        slot_minutes=60, valid_from=NOW.date() + dt.timedelta(days=7),
    )  # fmt: skip

    slots = scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(0, days=14))

    assert starts(slots) == [at(10, days=7)]


def test_only_the_specialist_edits_their_own_availability(cardiologist: User, coordinator: User):
    hours = {"weekday": 0, "start_time": dt.time(10), "end_time": dt.time(11)}

    with pytest.raises(PermissionDenied):
        scheduling.add_availability_rule(specialist=coordinator, **hours)
    rule = scheduling.add_availability_rule(specialist=cardiologist, **hours)
    with pytest.raises(PermissionDenied):
        scheduling.delete_availability_rule(specialist=coordinator, rule=rule)
    with pytest.raises(ValidationError):
        scheduling.add_availability_rule(specialist=cardiologist, **{**hours, "slot_minutes": 90})
    assert AvailabilityRule.objects.count() == 1


def test_specialist_publishes_hours_and_leave_on_the_availability_page(
    frozen: dt.datetime, cardiologist: User
):
    client = logged_in_client(cardiologist)

    rule = {"weekday": 0, "start_time": "10:00", "end_time": "12:00", "slot_minutes": 60}
    leave = {"starts_at": "2030-03-04T11:00", "ends_at": "2030-03-04T12:00", "reason": "Leave"}

    client.post("/consults/availability/", {"add_rule": "", **rule})
    client.post("/consults/availability/", {"add_exception": "", **leave})
    page = client.get("/consults/availability/")

    assert page.status_code == 200
    assert "10:00–12:00" in page.content.decode()
    assert starts(scheduling.free_slots(specialist=cardiologist, start=at(0), end=at(23))) == [
        at(10)
    ]


def test_the_availability_page_is_for_specialists(coordinator: User):
    assert logged_in_client(coordinator).get("/consults/availability/").status_code == 403


def test_coordinators_see_the_same_slot_in_their_own_time_zone(
    referral: Referral, coordinator: User, naryn_centre: Organization
):
    moscow_coordinator = member(naryn_centre, Membership.Role.COORDINATOR,
                                email="moscow@example.kg", time_zone="Europe/Moscow")  # fmt: skip

    in_bishkek = logged_in_client(coordinator).get(f"/consults/{referral.pk}/").content.decode()
    in_moscow = logged_in_client(moscow_coordinator).get(f"/consults/{referral.pk}/")

    value = f'value="{dt.datetime(2030, 3, 4, 4, tzinfo=dt.UTC).isoformat()}"'
    assert value in in_bishkek
    assert value in in_moscow.content.decode()
    assert "04.03.2030 10:00–10:30" in in_bishkek
    assert "04.03.2030 07:00–07:30" in in_moscow.content.decode()
    assert "04.03.2030 10:00" not in in_moscow.content.decode()


def test_the_specialists_day_lists_todays_sessions_and_audits_the_read(
    referral: Referral, coordinator: User, cardiologist: User, time_machine: Any
):
    from django.template.loader import render_to_string

    from accounts.models import AuditEvent

    today = scheduling.book_appointment(referral=referral, booked_by=coordinator,
                                        starts_at=at(11), kind="doctor_doctor")  # fmt: skip

    day = scheduling.appointments_today(cardiologist)
    card = render_to_string("consults/_appointments_card.html", {"appointments": day})
    time_machine.move_to(at(9, days=1), tick=False)

    assert day == [today]
    assert referral.patient.full_name in card
    assert AuditEvent.objects.filter(
        actor_user_id=cardiologist.pk, action="list", patient_id=referral.patient_id
    ).exists()
    assert scheduling.appointments_today(cardiologist) == []
