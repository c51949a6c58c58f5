"""Video sessions booked for tests, and a patient's way in by their join link."""

from __future__ import annotations

import datetime as dt

from django.test import Client
from django.utils import timezone

from accounts.models import Specialty, User
from consults.models import Appointment, Participant, Referral
from consults.services import referrals as workflow
from consults.services.links import issue_join_link
from ehr.models import Patient

# The question of the referral behind book_visit's appointment (a join link must not show it).
QUESTION = "Chest pain on exertion since March. Suspected angina?"


def book_session(
    *, clinician: User, coordinator: User, specialist: User, patient: Patient, starts_in: int = 5
) -> Appointment:
    """A live referral with an appointment starting in `starts_in` minutes; the specialist
    and the referring clinician invited by account, the patient by a link."""
    starts_at = timezone.now() + dt.timedelta(minutes=starts_in)
    appointment = _live_appointment(
        clinician=clinician, coordinator=coordinator, specialist=specialist, patient=patient,
        starts_at=starts_at, question="Chest pain on exertion",
    )  # fmt: skip
    for role, user in ((Participant.Role.SPECIALIST, specialist), ("clinician", clinician)):
        Participant.objects.create(
            appointment=appointment, user=user, role=role, name=str(user), starts_at=starts_at
        )
    Participant.objects.create(
        appointment=appointment, role=Participant.Role.PATIENT, name="Asel Mamytova",
        phone="+996700123456", starts_at=starts_at,
    )  # fmt: skip
    # As booking does: a booked referral is "scheduled".
    Referral.objects.filter(pk=appointment.referral_id).update(status=Referral.Status.SCHEDULED)
    return appointment


def link_patient(appointment: Appointment) -> Participant:
    return appointment.participants.get(role=Participant.Role.PATIENT, user=None)


def joined_by_link(appointment: Appointment) -> Client:
    """A browser that opened the patient's link and pressed "Join"."""
    client = Client()
    token = issue_join_link(participant=link_patient(appointment)).rstrip("/").rsplit("/", 1)[-1]
    response = client.post(f"/join/{token}/enter/")
    assert response.status_code == 302
    return client


def book_visit(
    *,
    clinician: User,
    coordinator: User,
    specialist: User,
    patient: Patient,
    starts_at: dt.datetime,
) -> Participant:
    """A live referral with one booked appointment and the patient invited to it.

    Rows are made directly: the booking service is being written elsewhere.
    """
    appointment = _live_appointment(
        clinician=clinician, coordinator=coordinator, specialist=specialist, patient=patient,
        starts_at=starts_at, question=QUESTION,
    )  # fmt: skip
    return Participant.objects.create(
        appointment=appointment,
        role=Participant.Role.PATIENT,
        name="Asel Mamytova",
        phone="+996700123456",
        starts_at=starts_at,
    )


def _live_appointment(
    *,
    clinician: User,
    coordinator: User,
    specialist: User,
    patient: Patient,
    starts_at: dt.datetime,
    question: str,
) -> Appointment:
    """A live referral, submitted and triaged to `specialist`, with one 30-minute
    doctor-patient appointment at `starts_at` (nobody invited yet)."""
    # A migration seeds the specialties, but a transactional test (the browser's) may run
    # after another one has flushed them.
    specialty, _ = Specialty.objects.get_or_create(
        code="cardiology",
        defaults={"name_en": "Cardiology", "name_ru": "Кардиология", "name_ky": "Кардиология"},
    )
    specialist.memberships.get().specialties.add(specialty)
    referral = workflow.create_referral(
        clinician=clinician, patient=patient, specialty=specialty, urgency="routine",
        question=question,
    )  # fmt: skip
    workflow.submit_referral(referral=referral, clinician=clinician)
    workflow.triage_referral(
        referral=referral, coordinator=coordinator, specialist=specialist, priority=2, mode="live"
    )
    return Appointment.objects.create(
        referral=referral,
        specialist=specialist,
        kind=Appointment.Kind.DOCTOR_PATIENT,
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(minutes=30),
        booked_by=coordinator,
    )
