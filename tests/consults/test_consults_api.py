"""The consults REST API with a Bearer token: the referral workflow, free slots, sessions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent, Specialty, User
from consults.models import Appointment, Referral
from ehr.models import Patient
from tests.consults.scheduling_clock import at

pytestmark = pytest.mark.django_db


def api(user: User) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")


def test_a_referral_goes_from_draft_to_triaged_through_the_api(
    frozen: dt.datetime, clinician: User, coordinator: User, cardiologist: User,
    patient: Patient, cardiology: Specialty,
):  # fmt: skip
    created = api(clinician).post(
        "/api/v1/referrals/",
        {"patient_id": patient.pk, "specialty": "cardiology", "question": "Murmur"},
        content_type="application/json",
    )
    referral_id = created.json()["id"]
    submitted = api(clinician).post(f"/api/v1/referrals/{referral_id}/submit/")
    triaged = api(coordinator).post(
        f"/api/v1/referrals/{referral_id}/triage/",
        {"specialist_id": cardiologist.pk, "priority": 1, "mode": "live"},
        content_type="application/json",
    )

    assert created.status_code == 201
    assert submitted.json()["status"] == "submitted"
    assert triaged.status_code == 200
    assert triaged.json()["status"] == "triaged"
    assert api(cardiologist).get(f"/api/v1/referrals/{referral_id}/").json()["question"] == (
        "Murmur"
    )


def test_referral_list_and_reads_are_scoped_and_audited(
    referral: Referral, clinician: User, talas_coordinator: User
):
    listed = api(clinician).get("/api/v1/referrals/")

    assert [r["id"] for r in listed.json()] == [referral.pk]
    assert AuditEvent.objects.filter(
        actor_user_id=clinician.pk, action="list", patient_id=referral.patient_id
    ).exists()
    assert api(talas_coordinator).get("/api/v1/referrals/").json() == []
    assert api(talas_coordinator).get(f"/api/v1/referrals/{referral.pk}/").status_code == 404


def test_refused_moves_answer_400_or_403(referral: Referral, clinician: User, coordinator: User):
    assert api(coordinator).post(f"/api/v1/referrals/{referral.pk}/submit/").status_code == 403
    cancelled = api(clinician).post(
        f"/api/v1/referrals/{referral.pk}/cancel/", {"reason": ""}, content_type="application/json"
    )
    assert cancelled.status_code == 400


def test_free_slots_of_a_specialist(referral: Referral, coordinator: User, cardiologist: User,
                                    patient_user: User):  # fmt: skip
    answer = api(coordinator).get(
        f"/api/v1/specialists/{cardiologist.pk}/free-slots/",
        {"start": at(0).isoformat(), "end": at(23).isoformat()},
    )

    assert answer.status_code == 200
    assert [dt.datetime.fromisoformat(s["starts_at"]) for s in answer.json()] == [
        at(10), at(10, 30), at(11), at(11, 30),
    ]  # fmt: skip
    assert api(patient_user).get(
        f"/api/v1/specialists/{cardiologist.pk}/free-slots/").status_code == 403  # fmt: skip


def test_booking_listing_and_cancelling_sessions(
    referral: Referral, coordinator: User, cardiologist: User, patient_user: User
):
    relative = {"role": "family", "name": "Aizada", "phone": "+996555000111"}
    booking = {"starts_at": at(10).isoformat(), "kind": "doctor_patient", "guests": [relative]}

    refused = api(patient_user).post(f"/api/v1/referrals/{referral.pk}/appointments/", booking,
                                     content_type="application/json")  # fmt: skip
    booked = api(coordinator).post(f"/api/v1/referrals/{referral.pk}/appointments/", booking,
                                   content_type="application/json")  # fmt: skip
    again = api(coordinator).post(f"/api/v1/referrals/{referral.pk}/appointments/", booking,
                                  content_type="application/json")  # fmt: skip
    listed = api(cardiologist).get("/api/v1/appointments/", {"upcoming": "true"})
    cancelled = api(coordinator).post(
        f"/api/v1/appointments/{booked.json()['id']}/cancel/", {"reason": "Storm"},
        content_type="application/json",
    )  # fmt: skip

    assert refused.status_code == 403
    assert booked.status_code == 201
    assert {p["role"] for p in booked.json()["participants"]} == {
        "specialist", "clinician", "patient", "family",
    }  # fmt: skip
    assert again.status_code == 400
    assert [a["id"] for a in listed.json()] == [booked.json()["id"]]
    assert cancelled.json()["status"] == "cancelled"
    assert Referral.objects.get().status == "triaged"


def test_a_past_slot_is_refused_with_a_clear_message(referral: Referral, coordinator: User):
    answer = api(coordinator).post(
        f"/api/v1/referrals/{referral.pk}/appointments/",
        {"starts_at": at(8).isoformat(), "kind": "doctor_doctor"},
        content_type="application/json",
    )

    assert answer.status_code == 400
    assert "passed" in str(answer.json())
    assert not Appointment.objects.exists()


def test_the_api_needs_a_token(referral: Referral):
    assert Client().get("/api/v1/appointments/").status_code in (401, 403)
