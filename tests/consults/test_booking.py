"""Booking, rescheduling and cancelling sessions: who may, which slots, and the database
keeping one booking per slot and per person even when two people book at once."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import translation

from accounts.models import Membership, Organization, Specialty, User
from consults.models import Appointment, Participant, Referral
from consults.services import scheduling
from ehr.models import Patient
from tests.conftest import logged_in_client
from tests.consults.referrals import triaged_referral
from tests.consults.scheduling_clock import at
from tests.factories.accounts import member
from tests.factories.ehr import PatientFactory

pytestmark = pytest.mark.django_db


def book(referral: Referral, by: User, starts_at: dt.datetime, **fields: Any) -> Appointment:
    return scheduling.book_appointment(
        referral=referral, booked_by=by, starts_at=starts_at,
        kind=fields.pop("kind", "doctor_patient"), **fields,
    )  # fmt: skip


def test_coordinator_books_a_free_slot_and_the_referral_is_scheduled(
    referral: Referral, coordinator: User, cardiologist: User, clinician: User, patient: Patient
):
    appointment = book(referral, coordinator, at(10, 30))

    referral.refresh_from_db()
    assert referral.status == "scheduled"
    assert (appointment.starts_at, appointment.ends_at) == (at(10, 30), at(11))
    assert appointment.specialist == cardiologist
    assert {(p.role, p.user) for p in appointment.participants.all()} == {
        ("specialist", cardiologist), ("clinician", clinician), ("patient", patient.user),
    }  # fmt: skip
    assert [e.to_status for e in referral.events.all()][-1] == "scheduled"


def test_a_patient_without_an_account_is_invited_by_name_and_phone(
    frozen: dt.datetime, clinician: User, coordinator: User, cardiologist: User,
    cardiology: Specialty, clinic: Organization, office_hours: list,
):  # fmt: skip
    patient = PatientFactory(organization=clinic, family_name="Osmonov", given_name="Tilek",
                             phone="+996700111222")  # fmt: skip
    referral = triaged_referral(
        clinician=clinician, coordinator=coordinator, specialist=cardiologist, patient=patient,
        specialty=cardiology,
    )  # fmt: skip
    guest = scheduling.Guest(role="interpreter", name="Aida Interpreter", email="aida@example.kg")

    appointment = book(referral, clinician, at(11), participants=[guest])

    invited = appointment.participants.get(role="patient")
    assert (invited.user, invited.name, invited.phone) == (None, patient.full_name, "+996700111222")
    assert appointment.participants.get(role="interpreter").email == "aida@example.kg"


def test_booking_a_written_opinion_makes_it_a_live_session(
    frozen: dt.datetime, clinician: User, coordinator: User, cardiologist: User,
    patient: Patient, cardiology: Specialty, office_hours: list,
):  # fmt: skip
    referral = triaged_referral(
        clinician=clinician, coordinator=coordinator, specialist=cardiologist, patient=patient,
        specialty=cardiology, mode="async",
    )  # fmt: skip

    book(referral, coordinator, at(10), kind="doctor_doctor")

    referral.refresh_from_db()
    assert (referral.status, referral.mode) == ("scheduled", "live")


def test_only_coordinators_and_referring_clinicians_book(
    referral: Referral, cardiologist: User, patient_user: User, talas_coordinator: User,
    other_clinician: User,
):  # fmt: skip
    for outsider in (cardiologist, patient_user, talas_coordinator, other_clinician):
        with pytest.raises(PermissionDenied):
            book(referral, outsider, at(10))

    assert not Appointment.objects.exists()


def test_an_untriaged_referral_cannot_be_booked(
    frozen: dt.datetime, clinician: User, patient: Patient, cardiology: Specialty,
    coordinator: User, office_hours: list,
):  # fmt: skip
    from consults.services import referrals as workflow

    referral = workflow.create_referral(
        clinician=clinician, patient=patient, specialty=cardiology, urgency="routine", question="?"
    )
    workflow.submit_referral(referral=referral, clinician=clinician)

    with pytest.raises(ValidationError, match="triaged"):
        book(referral, coordinator, at(10))


def test_only_free_future_slots_on_the_grid_can_be_booked(
    referral: Referral, coordinator: User, time_machine: Any
):
    with pytest.raises(ValidationError, match="not a free slot"):
        book(referral, coordinator, at(10, 10))  # off the grid
    with pytest.raises(ValidationError, match="not a free slot"):
        book(referral, coordinator, at(13))  # outside the hours
    time_machine.move_to(at(10, 45), tick=False)
    with pytest.raises(ValidationError, match="passed"):
        book(referral, coordinator, at(10, 30))

    assert Referral.objects.get().status == "triaged"


def test_a_booked_slot_is_refused_to_the_next_booking(
    referral: Referral, coordinator: User, clinician: User, other_patient: Patient,
    cardiologist: User, cardiology: Specialty, naryn_centre: Organization,
):  # fmt: skip
    second = triaged_referral(clinician=clinician, coordinator=coordinator,
                              specialist=cardiologist, patient=_patient_of(clinician),
                              specialty=cardiology)  # fmt: skip
    book(referral, coordinator, at(10))

    with pytest.raises(ValidationError, match="not a free slot"):
        book(second, coordinator, at(10))

    assert Appointment.objects.count() == 1
    assert Referral.objects.get(pk=second.pk).status == "triaged"


def _patient_of(clinician: User) -> Patient:
    organization = clinician.memberships.get().organization
    return PatientFactory(organization=organization, family_name="Second", given_name="Patient")


@pytest.mark.django_db(transaction=True)
def test_two_people_booking_the_same_slot_at_once_get_one_booking_and_one_refusal(
    referral: Referral, coordinator: User, clinician: User, cardiologist: User,
    cardiology: Specialty,
):  # fmt: skip
    """On PostgreSQL the two bookings really run at once, in two threads with their own
    connections: the partial unique index lets one in and refuses the other. SQLite's test
    database (in memory, shared cache) locks whole tables against concurrent writers, so
    there the two bookings run one after the other."""
    second = triaged_referral(clinician=clinician, coordinator=coordinator,
                              specialist=cardiologist, patient=_patient_of(clinician),
                              specialty=cardiology)  # fmt: skip
    outcomes: list[str] = []

    def attempt(which: Referral, by: User, barrier: threading.Barrier | None) -> None:
        try:
            if barrier:
                barrier.wait(timeout=10)
            # A new thread has no active language and falls back to the site's (Russian).
            with translation.override("en"):
                book(which, by, at(11), kind="doctor_doctor")
            outcomes.append("booked")
        except ValidationError as error:
            outcomes.append(" ".join(error.messages))
        finally:
            if barrier:
                connection.close()

    if connection.vendor == "postgresql":
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=attempt, args=(r, coordinator, barrier))
                   for r in (referral, second)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    else:
        attempt(referral, coordinator, None)
        attempt(second, coordinator, None)

    assert len(outcomes) == 2
    assert outcomes.count("booked") == 1
    refusal = next(o for o in outcomes if o != "booked")
    assert "booked by someone else" in refusal or "not a free slot" in refusal
    assert Appointment.objects.filter(starts_at=at(11), status="booked").count() == 1
    assert Referral.objects.filter(status="scheduled").count() == 1


def test_a_person_is_never_in_two_sessions_at_once(
    referral: Referral, coordinator: User, clinician: User, hospital: Organization,
    cardiology: Specialty,
):  # fmt: skip
    other_specialist = member(hospital, Membership.Role.SPECIALIST, email="second@example.kg")
    other_specialist.memberships.get().specialties.add(cardiology)
    scheduling.add_availability_rule(specialist=other_specialist, weekday=0,
                                     start_time=dt.time(10), end_time=dt.time(12))  # fmt: skip
    second = triaged_referral(clinician=clinician, coordinator=coordinator,
                              specialist=other_specialist, patient=_patient_of(clinician),
                              specialty=cardiology)  # fmt: skip
    book(referral, coordinator, at(10))

    with pytest.raises(ValidationError, match="Bakyt Clinician already has a session"):
        book(second, coordinator, at(10), kind="doctor_doctor")

    assert Participant.objects.filter(user=clinician, is_active=True).count() == 1
    assert not Appointment.objects.filter(referral=second).exists()


def test_rescheduling_moves_the_session_and_its_participants(
    referral: Referral, coordinator: User, clinician: User
):
    appointment = book(referral, coordinator, at(10))

    scheduling.reschedule_appointment(appointment=appointment, actor=clinician,
                                      starts_at=at(11, 30))  # fmt: skip

    appointment.refresh_from_db()
    assert (appointment.starts_at, appointment.ends_at) == (at(11, 30), at(12))
    assert set(appointment.participants.values_list("starts_at", flat=True)) == {at(11, 30)}
    assert Referral.objects.get().status == "scheduled"
    assert at(10) in [s.starts_at for s in scheduling.free_slots(
        specialist=appointment.specialist, start=at(0), end=at(23))]  # fmt: skip


def test_cancelling_frees_the_slot_and_sends_the_referral_back_to_triage(
    referral: Referral, coordinator: User, cardiologist: User
):
    appointment = book(referral, coordinator, at(10))

    with pytest.raises(ValidationError):
        scheduling.cancel_appointment(appointment=appointment, actor=coordinator, reason=" ")
    with pytest.raises(PermissionDenied):
        scheduling.cancel_appointment(appointment=appointment, actor=cardiologist, reason="x")
    scheduling.cancel_appointment(appointment=appointment, actor=coordinator,
                                  reason="Specialist ill")  # fmt: skip

    referral.refresh_from_db()
    assert referral.status == "triaged"
    assert [e.to_status for e in referral.events.all()][-2:] == ["scheduled", "triaged"]
    assert not appointment.participants.filter(is_active=True).exists()
    assert book(referral, coordinator, at(10)).status == "booked"  # the slot is free again


def test_the_referral_page_books_moves_and_cancels(
    referral: Referral, coordinator: User, cardiologist: User
):
    client = logged_in_client(coordinator)
    assert "Book a session" in client.get(f"/consults/{referral.pk}/").content.decode()

    client.post(f"/consults/{referral.pk}/book/",
                {"starts_at": at(10).isoformat(), "kind": "doctor_doctor"})  # fmt: skip
    appointment = Appointment.objects.get()
    client.post(f"/consults/appointments/{appointment.pk}/reschedule/",
                {"starts_at": at(11).isoformat()})  # fmt: skip
    appointment.refresh_from_db()
    page = client.get(f"/consults/{referral.pk}/").content.decode()
    client.post(f"/consults/appointments/{appointment.pk}/cancel/", {"reason": "Storm"})

    assert appointment.starts_at == at(11)
    assert "04.03.2030 11:00" in page
    assert Appointment.objects.get().status == "cancelled"
    assert Referral.objects.get().status == "triaged"
    assert "Move to another slot" not in logged_in_client(cardiologist).get(
        f"/consults/{referral.pk}/").content.decode()  # fmt: skip
