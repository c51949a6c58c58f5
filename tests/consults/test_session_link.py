"""Weak-link mode, audio only and screen sharing on the signaling socket: the broker is told
what a participant's link carries, the others see it in their participant list. (That the
waiting room may send neither is in test_session_signaling's authorization tests.)"""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer

from accounts.models import User
from consults.models import Appointment
from tests.consults.signaling_sockets import answer_to, join, next_of, run, socket

pytestmark = pytest.mark.django_db(transaction=True)


def test_weak_link_mode_reaches_the_broker_and_the_others(
    session: Appointment,
    specialist: User,
    clinician: User,
):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        layer = get_channel_layer()
        broker = await layer.new_channel()
        await layer.group_add("media.rooms", broker)
        doctor, colleague = await socket(session, specialist), await socket(session, clinician)
        await join(doctor)
        await join(colleague)
        await colleague.send_json_to({"type": "link", "mode": "low"})
        return await layer.receive(broker), await next_of(doctor, "status")

    to_broker, seen_by_doctor = run(scenario)

    assert to_broker == {
        "type": "media.signal",
        "appointment_id": session.pk,
        "participant_key": f"user:{clinician.pk}",
        "signal": {"type": "link", "mode": "low"},
    }
    assert seen_by_doctor == {
        "type": "status", "participant_key": f"user:{clinician.pk}", "link": "low"
    }  # fmt: skip


def test_screen_sharing_is_shown_to_the_others(
    session: Appointment,
    specialist: User,
    clinician: User,
):
    async def scenario() -> list[dict[str, Any]]:
        doctor, colleague = await socket(session, specialist), await socket(session, clinician)
        await join(doctor)
        await join(colleague)
        await doctor.send_json_to({"type": "screen", "on": True})
        shared = await next_of(colleague, "status")
        await doctor.send_json_to({"type": "screen", "on": False})
        return [shared, await next_of(colleague, "status")]

    shared, stopped = run(scenario)

    assert shared == {"type": "status", "participant_key": f"user:{specialist.pk}", "screen": True}
    assert stopped["screen"] is False


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "link", "mode": "fast"}, "Field “mode” must be one of: normal, low, audio."),
        ({"type": "link"}, "Field “mode” must be one of: normal, low, audio."),
        ({"type": "screen"}, "Field “on” is missing."),
        ({"type": "screen", "on": "yes"}, "Field “on” must be true or false."),
    ],
)
def test_malformed_link_and_screen_messages_are_answered_clearly(
    session: Appointment,
    specialist: User,
    message: dict[str, Any],
    error: str,
):
    async def scenario() -> dict[str, Any]:
        ws = await socket(session, specialist)
        await join(ws)
        return await answer_to(ws, message)

    assert run(scenario) == {"type": "error", "message": error}
