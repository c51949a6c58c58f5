"""The live channel: a clinician's page hears of a diary alert the moment it is raised."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import AuditEvent, User
from ehr.models import Alert, Patient
from ehr.services.diary import acknowledge_alert, record_diary_entry, set_threshold
from telemed.asgi import application
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db(transaction=True)


def socket_for(user: User | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1")]
    if user is not None:
        session = logged_in_client(user).cookies["sessionid"].value
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, "/ws/alerts/", headers=headers)


def high_blood_pressure(patient: Patient, patient_user: User) -> None:
    record_diary_entry(
        patient=patient,
        user=patient_user,
        measure="blood_pressure",
        values={"systolic": 182, "diastolic": 95},
        client_uuid=uuid.uuid4(),
        measured_at=None,
    )


@pytest.fixture
def with_range(patient: Patient, clinician: User) -> None:
    set_threshold(
        patient=patient,
        user=clinician,
        measure="blood_pressure",
        low=Decimal(90),
        high=Decimal(140),
        second_low=None,
        second_high=Decimal(90),
    )


def test_clinician_gets_the_alert_live_and_by_email(
    patient: Patient, patient_user: User, clinician: User, with_range: None, mailoutbox: list
):
    socket = socket_for(clinician)

    async def scenario() -> dict[str, Any]:
        connected, _ = await socket.connect()
        assert connected
        await database_sync_to_async(high_blood_pressure)(patient, patient_user)
        message = await socket.receive_json_from(timeout=3)
        await socket.disconnect()
        return message

    message = async_to_sync(scenario)()

    alert = Alert.objects.get()
    assert message["type"] == "alert"
    assert message["alert"]["id"] == alert.pk
    assert message["alert"]["patient_name"] == patient.full_name
    assert message["alert"]["measure_label"] == "blood pressure"
    assert message["alert"]["ack_url"] == f"/diary/alerts/{alert.pk}/ack/"
    assert [m.to for m in mailoutbox] == [[clinician.email]]
    assert AuditEvent.objects.filter(
        actor_user_id=clinician.pk, patient_id=patient.pk, channel="websocket"
    ).exists()


def test_an_acknowledgement_is_announced_to_the_other_clinicians(
    patient: Patient, patient_user: User, clinician: User, with_range: None
):
    high_blood_pressure(patient, patient_user)
    alert = Alert.objects.get()
    socket = socket_for(clinician)

    async def scenario() -> dict[str, Any]:
        await socket.connect()
        await database_sync_to_async(acknowledge_alert)(alert=alert, user=clinician)
        message = await socket.receive_json_from(timeout=3)
        await socket.disconnect()
        return message

    assert async_to_sync(scenario)() == {
        "type": "acknowledged", "alert_id": alert.pk, "patient_id": patient.pk
    }  # fmt: skip


def test_clinicians_of_another_organization_receive_nothing(
    patient: Patient, patient_user: User, other_clinician: User, with_range: None
):
    socket = socket_for(other_clinician)

    async def scenario() -> bool:
        connected, _ = await socket.connect()
        assert connected  # a clinician elsewhere: their own clinic's alerts only
        await database_sync_to_async(high_blood_pressure)(patient, patient_user)
        heard_nothing = await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
        return heard_nothing

    assert async_to_sync(scenario)()


@pytest.mark.parametrize(("who", "close_code"), [("anonymous", 4401), ("patient", 4403)])
def test_anonymous_and_non_clinicians_cannot_connect(
    patient_user: User, patient: Patient, coordinator: User, who: str, close_code: int
):
    socket = socket_for(None if who == "anonymous" else patient_user)

    async def scenario() -> tuple[bool, Any]:
        return await socket.connect()

    connected, code = async_to_sync(scenario)()

    assert not connected
    assert code == close_code


def test_a_coordinator_cannot_connect(coordinator: User):
    socket = socket_for(coordinator)

    async def scenario() -> tuple[bool, Any]:
        return await socket.connect()

    assert async_to_sync(scenario)() == (False, 4403)
