"""`POST /hl7/oru`: an ORU^R01 over HTTP, authenticated with the API token."""

from __future__ import annotations

import hl7
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent, User
from ehr.models import LabMessage, Observation, Patient
from tests.ehr.test_hl7_lab_results import oru_message

pytestmark = pytest.mark.django_db


def post_oru(
    body: str, *, token: str | None, content_type: str = "application/hl7-v2"
) -> tuple[int, str]:
    # A plain client with CSRF checks on, as a browser-less lab system would meet them.
    client = Client(enforce_csrf_checks=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = client.post("/hl7/oru", data=body, content_type=content_type, **headers)
    return response.status_code, response.content.decode()


def token_for(user: User) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def test_lab_account_posts_oru_and_gets_the_ack(clinician: User, patient: Patient):
    status, body = post_oru(oru_message(pin=patient.pin), token=token_for(clinician))

    assert status == 200
    ack = hl7.parse(body)
    assert str(ack.segment("MSA")(1)) == "AA"
    assert str(ack.segment("MSA")(2)) == "MSG0001"
    assert Observation.objects.filter(patient=patient).count() == 3
    lab_message = LabMessage.objects.get()
    assert lab_message.channel == LabMessage.Channel.HTTP
    assert lab_message.sender == clinician.email
    event = AuditEvent.objects.filter(action=AuditEvent.Action.CREATE).first()
    assert event.actor_label == clinician.email
    assert event.channel == "hl7"


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"], ids=["cr", "lf", "crlf"])
def test_any_segment_separator_is_accepted_as_text_plain(
    coordinator: User, patient: Patient, separator: str
):
    status, body = post_oru(
        oru_message(pin=patient.pin, separator=separator),
        token=token_for(coordinator),
        content_type="text/plain; charset=utf-8",
    )

    assert status == 200
    assert str(hl7.parse(body).segment("MSA")(1)) == "AA"
    assert Observation.objects.filter(patient=patient).count() == 3


def test_unreadable_message_over_http_is_ar_in_the_body(clinician: User):
    status, body = post_oru("not hl7", token=token_for(clinician))

    assert status == 200
    assert str(hl7.parse(body).segment("MSA")(1)) == "AR"
    assert LabMessage.objects.get().status == LabMessage.Status.REJECTED


def test_without_a_token_the_answer_is_401_and_nothing_is_stored(patient: Patient):
    status, _ = post_oru(oru_message(pin=patient.pin), token=None)
    assert status == 401
    status, _ = post_oru(oru_message(pin=patient.pin), token="not-a-token")
    assert status == 401

    assert not LabMessage.objects.exists()


def test_a_patient_account_may_not_send_results(patient_user: User, patient: Patient):
    status, _ = post_oru(oru_message(pin=patient.pin), token=token_for(patient_user))

    assert status == 403
    assert not LabMessage.objects.exists()


def test_other_content_types_are_refused(clinician: User, patient: Patient):
    status, _ = post_oru(
        oru_message(pin=patient.pin), token=token_for(clinician), content_type="application/json"
    )

    assert status == 415
    assert not LabMessage.objects.exists()
