"""A patient's join link: what it shows, when it works, and how it refuses."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from accounts.models import AuditEvent, Organization, User
from consults.models import Appointment, JoinLink, Participant
from consults.services.links import issue_join_link
from ehr.models import Patient
from tests.consults.sessions import QUESTION, book_visit

pytestmark = pytest.mark.django_db
BISHKEK = ZoneInfo("Asia/Bishkek")
STARTS_AT = dt.datetime(2026, 3, 10, 10, 0, tzinfo=BISHKEK)


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture
def clinic_with_phone(clinic: Organization) -> Organization:
    clinic.phone = "+996 3534 5 12 34"
    clinic.save(update_fields=["phone"])
    return clinic


@pytest.fixture
def participant(
    clinic_with_phone: Organization,
    clinician: User,
    coordinator: User,
    specialist: User,
    patient: Patient,
) -> Participant:
    specialist.full_name = "Dr Nurlan Cardiologist"
    specialist.save(update_fields=["full_name"])
    return book_visit(
        clinician=clinician,
        coordinator=coordinator,
        specialist=specialist,
        patient=patient,
        starts_at=STARTS_AT,
    )


@pytest.fixture
def token(participant: Participant) -> str:
    return token_of(issue_join_link(participant=participant))


def test_link_in_its_window_shows_the_visit_but_no_clinical_details(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT - dt.timedelta(minutes=10), tick=False)

    response = client.get(f"/join/{token}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "10.03.2026" in page
    assert "10:00–10:30" in page
    assert "Dr Nurlan Cardiologist" in page
    assert "doctor–patient" in page
    assert "Check my camera and microphone" in page
    assert "/join/device-check/" in page
    assert ">Join<" in page
    assert QUESTION not in page
    assert "angina" not in page.lower()
    assert "Cardiology" not in page  # the specialty says too much about the illness
    assert response["Cache-Control"].startswith("max-age=0")
    assert response["Referrer-Policy"] == "same-origin"


def test_opening_the_link_records_its_use_and_an_audit_event(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT - dt.timedelta(minutes=10), tick=False)

    client.get(f"/join/{token}/")

    link = JoinLink.objects.get(participant=participant)
    assert link.first_used_at == STARTS_AT - dt.timedelta(minutes=10)
    event = AuditEvent.objects.get(detail__join_link=participant.pk)
    assert event.actor_user_id is None
    assert event.actor_label == "Asel Mamytova"
    assert event.action == AuditEvent.Action.VIEW
    assert event.patient_id == participant.appointment.referral.patient_id
    assert event.region == participant.appointment.referral.region
    assert event.channel == "web"


def test_unknown_link_is_not_valid(client: Client, token: str, time_machine):
    time_machine.move_to(STARTS_AT, tick=False)

    response = client.get(f"/join/{secrets.token_urlsafe(32)}/")

    assert response.status_code == 404
    assert "This link is not valid" in response.content.decode()


def test_link_replaced_by_a_newer_one_says_so_and_offers_the_clinic(
    client: Client, participant: Participant, token: str, time_machine
):
    newer = token_of(issue_join_link(participant=participant))
    time_machine.move_to(STARTS_AT, tick=False)

    response = client.get(f"/join/{token}/")

    page = response.content.decode()
    assert response.status_code == 410
    assert "This link was replaced by a newer one" in page
    assert "At-Bashy FMC" in page
    assert "+996 3534 5 12 34" in page
    assert client.get(f"/join/{newer}/").status_code == 200


def test_link_of_a_cancelled_appointment_says_it_was_cancelled(
    client: Client, participant: Participant, token: str, time_machine
):
    Appointment.objects.filter(pk=participant.appointment_id).update(status="cancelled")
    time_machine.move_to(STARTS_AT, tick=False)

    response = client.get(f"/join/{token}/")

    assert response.status_code == 410
    assert "This appointment was cancelled" in response.content.decode()
    assert not AuditEvent.objects.filter(detail__join_link=participant.pk).exists()


def test_link_opened_too_early_tells_when_it_opens(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT - dt.timedelta(days=1), tick=False)

    response = client.get(f"/join/{token}/")

    page = response.content.decode()
    assert response.status_code == 200  # not an error: the patient is only early
    assert "The link opens at 09:30 on 10.03" in page
    assert "At-Bashy FMC" in page
    assert "Dr Nurlan Cardiologist" not in page
    assert JoinLink.objects.get(participant=participant).first_used_at is None


def test_link_after_the_visit_says_it_is_over(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT + dt.timedelta(hours=2), tick=False)

    response = client.get(f"/join/{token}/")

    assert response.status_code == 410
    assert "This appointment is over" in response.content.decode()


def test_join_remembers_the_participant_and_opens_the_waiting_page(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT - dt.timedelta(minutes=5), tick=False)

    response = client.post(f"/join/{token}/enter/", follow=True)

    assert response.redirect_chain == [(f"/join/session/{participant.appointment_id}/", 302)]
    assert response.status_code == 200
    assert "The session will open here" in response.content.decode()
    assert client.session["join_participant_id"] == participant.pk
    assert client.session["join_appointment_id"] == participant.appointment_id
    assert token not in str(dict(client.session))  # the session keeps ids, not the token


def test_waiting_page_of_another_appointment_refuses(
    client: Client,
    participant: Participant,
    token: str,
    clinician: User,
    coordinator: User,
    specialist: User,
    patient: Patient,
    time_machine,
):
    other = book_visit(
        clinician=clinician, coordinator=coordinator, specialist=specialist,
        patient=patient, starts_at=STARTS_AT + dt.timedelta(hours=1),
    )  # fmt: skip
    time_machine.move_to(STARTS_AT - dt.timedelta(minutes=5), tick=False)
    client.post(f"/join/{token}/enter/")

    response = client.get(f"/join/session/{other.appointment_id}/")

    assert response.status_code == 403
    assert "Dr Nurlan" not in response.content.decode()


def test_waiting_page_refuses_a_browser_that_did_not_join(
    client: Client, participant: Participant, time_machine
):
    time_machine.move_to(STARTS_AT, tick=False)

    response = client.get(f"/join/session/{participant.appointment_id}/")

    assert response.status_code == 403


def test_waiting_page_refuses_once_the_link_is_replaced(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT - dt.timedelta(minutes=5), tick=False)
    client.post(f"/join/{token}/enter/")
    issue_join_link(participant=participant)

    response = client.get(f"/join/session/{participant.appointment_id}/")

    assert response.status_code == 403


def test_join_with_a_link_that_no_longer_works_refuses(
    client: Client, participant: Participant, token: str, time_machine
):
    time_machine.move_to(STARTS_AT + dt.timedelta(hours=2), tick=False)

    response = client.post(f"/join/{token}/enter/")

    assert response.status_code == 410
    assert "join_participant_id" not in client.session


def test_token_is_random_and_only_its_hash_is_stored(participant: Participant, token: str):
    again = token_of(issue_join_link(participant=participant))

    stored = list(JoinLink.objects.values_list("token_hash", flat=True))
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert token != again
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert all(token not in value and again not in value for value in stored)
