"""Consent and recording control on the session socket: real consumer, channel layer and
database. Only a doctor starts or stops; only with everyone's consent; a withdrawal or a
newcomer without consent stops it at once; everyone is told; start and stop are audited."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from accounts.models import AuditEvent, User
from consults.models import Appointment, Recording, SessionPresence
from consults.services.recording import recording_directory
from tests.consults.sessions import joined_by_link
from tests.consults.signaling_sockets import (
    answer_to,
    doctor_and_admitted_patient,
    join,
    next_of,
    run,
    socket,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def recording_state(
    ws: WebsocketCommunicator, *, everyone_consents: bool = False, **wanted: Any
) -> dict[str, Any]:
    """The next "recording" message whose fields match `wanted` (and, if asked, that shows
    everyone's consent): older ones may still be queued."""
    while True:
        message = await next_of(ws, "recording")
        if all(message.get(key) == value for key, value in wanted.items()) and (
            not everyone_consents or all(message["consents"].values())
        ):
            return message


async def consent_shown(ws: WebsocketCommunicator, key: str) -> dict[str, Any]:
    while True:
        message = await recording_state(ws)
        if message["consents"].get(key):
            return message


async def broker_listens() -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("media.rooms", channel)
    return layer, channel


async def next_record_signal(layer: Any, channel: str) -> dict[str, Any]:
    while True:
        message = await layer.receive(channel)
        if message["signal"]["type"] == "record":
            return message


def test_recording_starts_only_with_everyones_consent_and_only_by_a_doctor(
    session: Appointment, specialist: User, settings: Any, tmp_path: Any
) -> None:
    settings.RECORDING_DIR = tmp_path

    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        layer, broker = await broker_listens()
        doctor, patient_ws, _ = await doctor_and_admitted_patient(session, specialist, browser)
        seen = {}
        seen["patient_may_not"] = await answer_to(patient_ws, {"type": "record", "action": "start"})
        await doctor.send_json_to({"type": "consent", "given": True})
        seen["doctor_consents"] = await consent_shown(doctor, f"user:{specialist.pk}")
        seen["not_yet"] = await answer_to(doctor, {"type": "record", "action": "start"})
        await patient_ws.send_json_to({"type": "consent", "given": True})
        seen["all_consent"] = await recording_state(patient_ws, everyone_consents=True)
        await doctor.send_json_to({"type": "record", "action": "start"})
        seen["doctor_sees"] = await recording_state(doctor, recording=True)
        seen["patient_sees"] = await recording_state(patient_ws, recording=True)
        seen["broker"] = await next_record_signal(layer, broker)
        seen["bad"] = await answer_to(doctor, {"type": "record", "action": "pause"})
        return seen

    seen = run(scenario)

    assert seen["patient_may_not"]["message"] == (
        "Only the doctors of this session start or stop recording."
    )
    assert seen["not_yet"]["message"] == (
        "Recording needs everyone's consent. Not yet: Asel Mamytova."
    )
    assert sorted(seen["doctor_consents"]["consents"].values()) == [False, True]
    assert set(seen["all_consent"]["consents"].values()) == {True}
    # Each state says when it was read: a page keeps the latest whatever order they arrive in.
    assert seen["all_consent"]["as_of"] > seen["doctor_consents"]["as_of"]
    recording = Recording.objects.get()
    assert recording.status == Recording.Status.RECORDING
    assert recording.started_by == specialist
    assert seen["patient_sees"]["recording_id"] == recording.pk
    assert seen["patient_sees"]["started_by"] == str(specialist)
    assert seen["broker"] == {
        "type": "media.signal",
        "appointment_id": session.pk,
        "participant_key": f"user:{specialist.pk}",
        "signal": {
            "type": "record",
            "action": "start",
            "recording_id": recording.pk,
            "directory": str(recording_directory(recording.pk)),
        },
    }
    assert seen["bad"]["message"] == "Field “action” must be “start” or “stop”."
    assert SessionPresence.objects.filter(recording_consent=True).count() == 2
    started = AuditEvent.objects.get(object_type="consults.recording")
    assert (started.action, started.actor_user_id, started.detail) == (
        "create", specialist.pk, {"recording": "start"}
    )  # fmt: skip
    assert started.patient_id == session.referral.patient_id


def test_a_withdrawn_consent_stops_the_recording_at_once_and_everyone_is_told(
    session: Appointment, specialist: User
) -> None:
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        layer, broker = await broker_listens()
        doctor, patient_ws, _ = await doctor_and_admitted_patient(session, specialist, browser)
        for ws in (doctor, patient_ws):
            await ws.send_json_to({"type": "consent", "given": True})
        await recording_state(doctor, everyone_consents=True)
        await doctor.send_json_to({"type": "record", "action": "start"})
        await recording_state(doctor, recording=True)
        await next_record_signal(layer, broker)
        await patient_ws.send_json_to({"type": "consent", "given": False})
        return {
            "doctor_sees": await recording_state(doctor, recording=False),
            "broker": await next_record_signal(layer, broker),
        }

    seen = run(scenario)

    recording = Recording.objects.get()
    assert seen["doctor_sees"]["reason"] == "consent_withdrawn"
    assert seen["broker"]["signal"] == {
        "type": "record", "action": "stop", "recording_id": recording.pk
    }  # fmt: skip
    assert recording.status == Recording.Status.PROCESSING
    assert recording.stop_reason == "consent_withdrawn"
    assert recording.stopped_at is not None
    events = AuditEvent.objects.filter(object_type="consults.recording").order_by("id")
    assert [e.detail for e in events] == [
        {"recording": "start"},
        {"recording": "stop", "reason": "consent_withdrawn"},
    ]


def test_someone_coming_in_without_consent_stops_it_and_a_doctor_stops_it_too(
    session: Appointment, specialist: User, clinician: User
) -> None:
    async def scenario() -> dict[str, Any]:
        layer, broker = await broker_listens()
        doctor = await socket(session, specialist)
        await join(doctor)
        await doctor.send_json_to({"type": "consent", "given": True})
        await doctor.send_json_to({"type": "record", "action": "start"})
        await recording_state(doctor, recording=True)
        await next_record_signal(layer, broker)
        other = await socket(session, clinician)
        await join(other)
        seen = {"stopped": await recording_state(doctor, recording=False)}
        seen["broker"] = await next_record_signal(layer, broker)
        # With everyone's consent again, a doctor starts and then stops it.
        await other.send_json_to({"type": "consent", "given": True})
        await recording_state(doctor, everyone_consents=True)
        await doctor.send_json_to({"type": "record", "action": "start"})
        await recording_state(other, recording=True)
        await other.send_json_to({"type": "record", "action": "stop"})
        seen["stopped_again"] = await recording_state(doctor, recording=False)
        seen["nothing_to_stop"] = await answer_to(other, {"type": "record", "action": "stop"})
        return seen

    seen = run(scenario)

    assert seen["stopped"]["reason"] == "joined_without_consent"
    assert seen["broker"]["signal"]["action"] == "stop"
    first, second = Recording.objects.order_by("id")
    assert first.stop_reason == "joined_without_consent"
    assert second.stop_reason == "stopped"
    assert second.status == Recording.Status.PROCESSING
    assert seen["nothing_to_stop"]["message"] == "This session is not being recorded."
    stop = AuditEvent.objects.filter(detail__recording="stop").order_by("id").last()
    assert stop.actor_user_id == clinician.pk
