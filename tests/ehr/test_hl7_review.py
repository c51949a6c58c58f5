"""The review queue of lab messages: who sees which, and attaching an unmatched one."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent, User
from ehr.models import LabMessage, Observation, Patient
from ehr.services.lab_results import receive_oru
from tests.conftest import logged_in_client
from tests.ehr.test_hl7_lab_results import oru_message

pytestmark = pytest.mark.django_db

UNKNOWN_PIN = "99999999999999"


def unmatched_message() -> LabMessage:
    lab_message, _ = receive_oru(
        raw=oru_message(pin=UNKNOWN_PIN), channel="mllp", sender="127.0.0.1"
    )
    return lab_message


def test_coordinator_sees_unmatched_message_and_attaches_it_to_the_patient(
    coordinator: User, patient: Patient
):
    lab_message = unmatched_message()
    client = logged_in_client(coordinator)

    listing = client.get("/hl7/messages/")
    detail = client.get(f"/hl7/messages/{lab_message.pk}/")
    response = client.post(f"/hl7/messages/{lab_message.pk}/attach/", {"pin": patient.pin})

    assert listing.status_code == 200
    assert f"/hl7/messages/{lab_message.pk}/" in listing.content.decode()
    assert detail.status_code == 200
    assert "PID|1||L-5531" in detail.content.decode()  # the raw message, segment by segment
    assert 'name="pin"' in detail.content.decode()
    assert response.status_code == 302
    assert response["Location"] == "/hl7/messages/"
    lab_message.refresh_from_db()
    assert lab_message.status == LabMessage.Status.RESOLVED
    assert lab_message.patient == patient
    assert lab_message.observation_count == 3
    cholesterol = Observation.objects.get(patient=patient, code="2093-3")
    assert cholesterol.source == Observation.Source.LAB
    created = AuditEvent.objects.filter(
        action=AuditEvent.Action.CREATE, patient_id=patient.pk, object_type="ehr.observation"
    )
    assert created.count() == 3
    assert {event.actor_user_id for event in created} == {coordinator.pk}
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.VIEW, object_type="ehr.labmessage", actor_user_id=coordinator.pk
    ).exists()


def test_attaching_to_a_pin_nobody_has_is_refused_with_the_reason(coordinator: User):
    lab_message = unmatched_message()
    client = logged_in_client(coordinator)

    response = client.post(f"/hl7/messages/{lab_message.pk}/attach/", {"pin": "12345678901234"})

    assert response.status_code == 400
    assert "No patient you may see" in response.content.decode()
    lab_message.refresh_from_db()
    assert lab_message.status == LabMessage.Status.UNMATCHED


def test_coordinator_cannot_attach_to_a_patient_outside_their_region(
    coordinator: User, talas_patient: Patient
):
    lab_message = unmatched_message()
    client = logged_in_client(coordinator)

    response = client.post(f"/hl7/messages/{lab_message.pk}/attach/", {"pin": talas_patient.pin})

    assert response.status_code == 400
    assert not Observation.objects.exists()


def test_attached_message_follows_its_patient_and_cannot_be_attached_again(
    coordinator: User, clinician: User, patient: Patient
):
    lab_message = unmatched_message()
    client = logged_in_client(coordinator)
    client.post(f"/hl7/messages/{lab_message.pk}/attach/", {"pin": patient.pin})

    again = client.post(f"/hl7/messages/{lab_message.pk}/attach/", {"pin": patient.pin})

    # The LabMessage policy: a matched message belongs to its patient's clinicians.
    assert again.status_code == 404
    assert Observation.objects.filter(patient=patient).count() == 3
    page = logged_in_client(clinician).get(f"/hl7/messages/{lab_message.pk}/")
    assert page.status_code == 200
    assert 'name="pin"' not in page.content.decode()


def test_review_queue_is_not_visible_to_a_patient(patient_user: User, patient: Patient):
    lab_message = unmatched_message()
    matched, _ = receive_oru(
        raw=oru_message(pin=patient.pin, control_id="OWN1"), channel="mllp", sender="lab"
    )
    client = logged_in_client(patient_user)

    listing = client.get("/hl7/messages/?status=all")

    assert listing.status_code == 200
    assert f"/hl7/messages/{lab_message.pk}/" not in listing.content.decode()
    assert f"/hl7/messages/{matched.pk}/" not in listing.content.decode()
    assert "No lab messages here." in listing.content.decode()
    assert client.get(f"/hl7/messages/{lab_message.pk}/").status_code == 404
    assert client.get(f"/hl7/messages/{matched.pk}/").status_code == 404
    response = client.post(f"/hl7/messages/{lab_message.pk}/attach/", {"pin": patient.pin})
    assert response.status_code == 404
    assert LabMessage.objects.get(pk=lab_message.pk).status == LabMessage.Status.UNMATCHED


def test_clinician_sees_messages_of_own_patients_only(
    clinician: User, other_clinician: User, patient: Patient
):
    matched, _ = receive_oru(raw=oru_message(pin=patient.pin), channel="mllp", sender="lab")
    unmatched = unmatched_message()

    own = logged_in_client(clinician)
    other = logged_in_client(other_clinician)

    assert own.get(f"/hl7/messages/{matched.pk}/").status_code == 200
    assert f"/hl7/messages/{matched.pk}/" in own.get("/hl7/messages/?status=all").content.decode()
    assert other.get(f"/hl7/messages/{matched.pk}/").status_code == 404
    assert (
        f"/hl7/messages/{matched.pk}/"
        not in other.get("/hl7/messages/?status=all").content.decode()
    )
    # Unmatched messages go to coordinators, not to every clinician.
    assert own.get(f"/hl7/messages/{unmatched.pk}/").status_code == 404
    denied = AuditEvent.objects.filter(
        outcome=AuditEvent.Outcome.DENIED, actor_user_id=other_clinician.pk
    )
    assert denied.exists()


def test_queue_lists_only_messages_waiting_for_review_by_default(
    coordinator: User, patient: Patient
):
    waiting = unmatched_message()
    rejected, _ = receive_oru(raw="garbage", channel="http", sender="lab@example.kg")
    client = logged_in_client(coordinator)

    page = client.get("/hl7/messages/").content.decode()

    assert f"/hl7/messages/{waiting.pk}/" in page
    assert f"/hl7/messages/{rejected.pk}/" in page
    assert "MSH" in client.get(f"/hl7/messages/{rejected.pk}/").content.decode()
