"""The signaling socket of a video session: who gets in, the waiting room, chat, and what each
message may do. Real consumer, real channel layer, real database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, User
from consults.models import Appointment, ChatMessage, Participant, Referral, SessionPresence
from consults.services.links import issue_join_link
from consults.services.signaling import MAX_CHAT_CHARS
from tests.consults.sessions import joined_by_link, link_patient
from tests.consults.signaling_sockets import (
    answer_to,
    database_sync,
    doctor_and_admitted_patient,
    join,
    next_of,
    own_state,
    run,
    socket,
)

pytestmark = pytest.mark.django_db(transaction=True)
NOT_A_PARTICIPANT = 4403


async def list_where(
    ws: WebsocketCommunicator, is_wanted: Callable[[dict[str, str]], bool]
) -> dict[str, Any]:
    """The next participant list (name -> state) that `is_wanted`."""
    while True:
        message = await next_of(ws, "participants")
        if is_wanted(states(message)):
            return message


async def still_open(ws: WebsocketCommunicator) -> bool:
    await ws.send_json_to({"type": "ping"})
    return (await next_of(ws, "pong")) == {"type": "pong"}


async def connect_as(appointment: Appointment, who: User | Client | None) -> tuple[bool, Any]:
    return await (await socket(appointment, who)).connect()


async def join_as(appointment: Appointment, who: User | Client | None) -> dict[str, Any]:
    return await join(await socket(appointment, who))


def states(message: dict[str, Any]) -> dict[str, str]:
    return {person["name"]: person["state"] for person in message["participants"]}


# --- who gets in ------------------------------------------------------------------------------


def test_stranger_and_anonymous_visitor_are_refused(session: Appointment, other_clinician: User):
    async def scenario() -> list[tuple[bool, Any]]:
        return [await connect_as(session, other_clinician), await connect_as(session, None)]

    results = run(scenario)

    assert results == [(False, NOT_A_PARTICIPANT), (False, NOT_A_PARTICIPANT)]


def test_link_replaced_by_a_newer_one_is_refused(session: Appointment):
    browser = joined_by_link(session)
    issue_join_link(participant=link_patient(session))  # the clinic sent a new link

    result = run(lambda: connect_as(session, browser))

    assert result == (False, NOT_A_PARTICIPANT)


def test_link_outside_its_window_is_refused(session: Appointment):
    browser = joined_by_link(session)
    long_ago = timezone.now() - dt.timedelta(hours=3)
    Appointment.objects.filter(pk=session.pk).update(
        starts_at=long_ago, ends_at=long_ago + dt.timedelta(minutes=30)
    )

    result = run(lambda: connect_as(session, browser))

    assert result == (False, NOT_A_PARTICIPANT)


def test_cancelled_appointment_refuses_even_its_specialist(session: Appointment, specialist: User):
    Appointment.objects.filter(pk=session.pk).update(status=Appointment.Status.CANCELLED)

    result = run(lambda: connect_as(session, specialist))

    assert result == (False, NOT_A_PARTICIPANT)


def test_link_replaced_during_the_call_ends_that_patients_access(
    session: Appointment, specialist: User
):
    browser = joined_by_link(session)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        patient_ws = await socket(session, browser)
        await join(patient_ws)
        await database_sync(lambda: issue_join_link(participant=link_patient(session)))
        error = await answer_to(patient_ws, {"type": "leave"})
        closed = await patient_ws.receive_output(timeout=5)
        return error, closed

    error, closed = run(scenario)

    assert error["message"] == "You are no longer a participant of this session."
    assert closed == {"type": "websocket.close", "code": NOT_A_PARTICIPANT}


# --- joining, the waiting room ----------------------------------------------------------------


def test_specialist_and_clinician_join_and_see_each_other(
    session: Appointment, specialist: User, clinician: User
):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        specialist_ws, clinician_ws = (
            await socket(session, specialist),
            await socket(session, clinician),
        )
        first = await join(specialist_ws)
        second = await join(clinician_ws)
        seen_by_specialist = await list_where(specialist_ws, lambda people: len(people) == 2)
        await specialist_ws.disconnect()
        await clinician_ws.disconnect()
        return first, second, seen_by_specialist

    first, second, seen_by_specialist = run(scenario)

    assert first["state"] == "admitted"
    assert first["participant_key"] == f"user:{specialist.pk}"
    assert second["state"] == "admitted"
    both = {str(specialist): "admitted", str(clinician): "admitted"}
    assert states(second) == both
    assert states(seen_by_specialist) == both


def test_specialists_first_join_opens_the_session(session: Appointment, specialist: User):
    async def scenario() -> None:
        await join(await socket(session, specialist))

    run(scenario)

    assert Referral.objects.get(pk=session.referral_id).status == Referral.Status.IN_SESSION


def test_early_patient_waits_and_cannot_chat_until_admitted(session: Appointment, specialist: User):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        doctor, patient_ws = await socket(session, specialist), await socket(session, browser)
        await join(doctor)
        seen = {"joined": await join(patient_ws)}
        seen["refused_chat"] = await answer_to(patient_ws, {"type": "chat", "text": "Hello?"})
        seen["doctor_sees"] = await list_where(doctor, lambda people: len(people) == 2)
        patient_key = seen["joined"]["participant_key"]
        await doctor.send_json_to({"type": "admit", "participant_key": patient_key})
        seen["patient_sees"] = await own_state(patient_ws, "admitted")
        seen["history"] = await next_of(patient_ws, "chat.history")
        await patient_ws.send_json_to({"type": "chat", "text": "I can hear you"})
        seen["doctor_reads"] = await next_of(doctor, "chat")
        return seen

    seen = run(scenario)

    assert seen["joined"]["state"] == "waiting"
    assert "chat" not in seen["joined"]  # the waiting room does not read the call's chat
    assert seen["refused_chat"]["message"] == "Please wait: the doctor will admit you."
    assert states(seen["doctor_sees"])["Asel Mamytova"] == "waiting"
    assert seen["patient_sees"]["state"] == "admitted"
    assert seen["history"]["messages"] == []
    assert seen["doctor_reads"]["message"]["text"] == "I can hear you"
    assert seen["doctor_reads"]["message"]["author"] == "Asel Mamytova"


def test_declined_patient_is_told_and_stays_out(session: Appointment, clinician: User):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        doctor, patient_ws = await socket(session, clinician), await socket(session, browser)
        await join(doctor)
        key = (await join(patient_ws))["participant_key"]
        await doctor.send_json_to({"type": "decline", "participant_key": key})
        told = await own_state(patient_ws, "declined")
        refused = await answer_to(patient_ws, {"type": "mute", "audio": False})
        await patient_ws.disconnect()
        again = await join(await socket(session, browser))
        return {"told": told, "refused": refused, "again": again}

    seen = run(scenario)

    assert seen["told"]["state"] == "declined"
    assert seen["refused"]["message"] == "The doctor did not admit you to this session."
    assert seen["again"]["state"] == "declined"


def test_admitted_patient_who_drops_comes_back_without_waiting(
    session: Appointment, specialist: User
):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        doctor, patient_ws, _ = await doctor_and_admitted_patient(session, specialist, browser)
        await patient_ws.disconnect()  # the phone switched from Wi-Fi to mobile data
        await list_where(doctor, lambda people: people.get("Asel Mamytova") == "left")
        # Kept in a variable: a communicator nobody holds is collected and its consumer
        # cancelled, perhaps before it told the others.
        phone_again = await socket(session, browser)
        back = await join(phone_again)
        sees_return = await list_where(doctor, lambda people: people["Asel Mamytova"] != "left")
        return {"back": back, "sees_return": sees_return}

    seen = run(scenario)

    assert seen["back"]["state"] == "admitted"
    assert states(seen["sees_return"])["Asel Mamytova"] == "admitted"


def test_patient_with_an_account_waits_like_a_linked_one(
    session: Appointment, patient_user: User, specialist: User
):
    Participant.objects.filter(pk=link_patient(session).pk).update(user=patient_user)

    joined = run(lambda: join_as(session, patient_user))

    assert joined["state"] == "waiting"
    assert joined["participant_key"] == f"user:{patient_user.pk}"


# --- chat -------------------------------------------------------------------------------------


def test_chat_is_saved_with_the_consult_and_reaches_the_others_but_not_the_waiting_room(
    session: Appointment, specialist: User, clinician: User
):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        doctor, colleague = await socket(session, specialist), await socket(session, clinician)
        patient_ws = await socket(session, browser)
        await join(doctor)
        await join(colleague)
        await join(patient_ws)
        await colleague.send_json_to({"type": "chat", "text": "  ECG attached in the record  "})
        received = await next_of(doctor, "chat")
        # Everything the waiting patient receives up to the list that follows a later mute.
        await doctor.send_json_to({"type": "mute", "video": False})
        patient_got = [await patient_ws.receive_json_from(timeout=5)]
        while not is_after_mute(patient_got[-1], specialist):
            patient_got.append(await patient_ws.receive_json_from(timeout=5))
        return {"received": received, "patient_got": [m["type"] for m in patient_got]}

    seen = run(scenario)

    message = ChatMessage.objects.get()
    assert (message.appointment_id, message.author_user_id) == (session.pk, clinician.pk)
    assert message.text == "ECG attached in the record"
    assert seen["received"]["message"]["text"] == "ECG attached in the record"
    assert seen["received"]["message"]["author_key"] == f"user:{clinician.pk}"
    assert "chat" not in seen["patient_got"]


def is_after_mute(message: dict[str, Any], user: User) -> bool:
    people = message.get("participants", [])
    return any(p["participant_key"] == f"user:{user.pk}" and not p["video"] for p in people)


def test_admitted_person_gets_the_chat_so_far_on_joining(
    session: Appointment, specialist: User, clinician: User
):
    ChatMessage.objects.create(
        appointment=session, author_user=specialist, author_name="Dr", text="Hi"
    )

    joined = run(lambda: join_as(session, clinician))

    assert [line["text"] for line in joined["chat"]] == ["Hi"]


# --- malformed messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("{not json", "A message must be a JSON object with a “type”."),
        ([1, 2], "A message must be a JSON object with a “type”."),
        ({"text": "no type"}, "Field “type” is missing."),
        ({"type": "dance"}, "Unknown message type “dance”."),
        (
            {"type": "chat", "text": "x" * (MAX_CHAT_CHARS + 1)},
            f"Field “text” is too long (at most {MAX_CHAT_CHARS} characters).",
        ),
        ({"type": "chat", "text": "   "}, "A chat message cannot be empty."),
        ({"type": "chat"}, "Field “text” is missing."),
        ({"type": "admit"}, "Field “participant_key” is missing."),
        ({"type": "mute", "audio": "off"}, "Field “audio” must be true or false."),
        ({"type": "mute"}, "Field “audio” or “video” is missing."),
        ({"type": "offer", "sdp": 42}, "Field “sdp” must be text."),
        ({"type": "ice", "candidate": "x"}, "Field “candidate” must be an object or null."),
        (
            {"type": "quality", "stats": {"loss": "high"}},
            "Field “stats” must be an object of numbers.",
        ),  # fmt: skip
    ],
)
def test_malformed_message_is_answered_clearly_and_the_socket_stays_open(
    session: Appointment, specialist: User, message: Any, error: str
):
    async def scenario() -> tuple[dict[str, Any], bool]:
        ws = await socket(session, specialist)
        await join(ws)
        answer = await answer_to(ws, message)
        return answer, await still_open(ws)

    answer, is_open = run(scenario)

    assert answer == {"type": "error", "message": error}
    assert is_open


def test_messages_before_join_are_refused(session: Appointment, specialist: User):
    async def scenario() -> dict[str, Any]:
        ws = await socket(session, specialist)
        await ws.connect()
        return await answer_to(ws, {"type": "chat", "text": "hello"})

    assert run(scenario)["message"] == "Join the session first."


# --- authorization of each message type -------------------------------------------------------

WAITING_REFUSED = "Please wait: the doctor will admit you."


@pytest.mark.parametrize(
    "message",
    [
        {"type": "offer", "sdp": "v=0"},
        {"type": "answer", "sdp": "v=0"},
        {"type": "ice", "candidate": None},
        {"type": "chat", "text": "hi"},
        {"type": "mute", "audio": False},
        {"type": "admit", "participant_key": "user:1"},
        {"type": "decline", "participant_key": "user:1"},
        {"type": "link", "mode": "low"},
        {"type": "screen", "on": True},
    ],
)
def test_waiting_patient_may_not_send_media_chat_mute_or_admissions(
    session: Appointment, message: dict[str, Any]
):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        ws = await socket(session, browser)
        await join(ws)
        return await answer_to(ws, message)

    assert run(scenario)["message"] == WAITING_REFUSED


def test_waiting_patient_may_send_quality_and_leave(session: Appointment, specialist: User):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        doctor, patient_ws = await socket(session, specialist), await socket(session, browser)
        await join(doctor)
        await join(patient_ws)
        await patient_ws.send_json_to({"type": "quality", "stats": {"loss": 0.03, "rtt": 300}})
        quality = await next_of(doctor, "quality")
        await patient_ws.send_json_to({"type": "leave"})
        return {"quality": quality, "left": await next_of(patient_ws, "left")}

    seen = run(scenario)

    assert seen["quality"]["stats"] == {"loss": 0.03, "rtt": 300}
    assert seen["left"] == {"type": "left"}
    assert SessionPresence.objects.get(participant__isnull=False).state == "left"


def test_admitted_patient_may_not_admit_and_doctors_admit_only_the_waiting(
    session: Appointment, specialist: User, clinician: User
):
    browser = joined_by_link(session)

    async def scenario() -> dict[str, Any]:
        doctor, patient_ws, key = await doctor_and_admitted_patient(session, specialist, browser)
        by_patient = {"type": "decline", "participant_key": f"user:{specialist.pk}"}
        return {
            "patient_admits": await answer_to(patient_ws, by_patient),
            "admit_again": await answer_to(doctor, {"type": "admit", "participant_key": key}),
            "admit_nobody": await answer_to(doctor, {"type": "admit", "participant_key": "x"}),
        }

    seen = run(scenario)

    assert seen["patient_admits"]["message"] == (
        "Only the doctors of this session admit participants."
    )
    assert seen["admit_again"]["message"] == "Nobody with this key is waiting to be admitted."
    assert seen["admit_nobody"]["message"] == "Nobody with this key is waiting to be admitted."


def test_mute_state_is_shown_to_everyone(session: Appointment, specialist: User, clinician: User):
    async def scenario() -> dict[str, Any]:
        doctor, colleague = await socket(session, specialist), await socket(session, clinician)
        await join(doctor)
        await join(colleague)
        await doctor.send_json_to({"type": "mute", "audio": False})
        while True:
            seen = await next_of(colleague, "participants")
            me = [
                p for p in seen["participants"] if p["participant_key"] == f"user:{specialist.pk}"
            ]
            if not me[0]["audio"]:
                return me[0]

    person = run(scenario)

    assert (person["audio"], person["video"]) == (False, True)


# --- media signaling with the broker ----------------------------------------------------------


def test_admitted_offer_and_ice_reach_the_media_broker(session: Appointment, specialist: User):
    async def scenario() -> list[dict[str, Any]]:
        layer = get_channel_layer()
        broker = await layer.new_channel()
        await layer.group_add("media.rooms", broker)
        ws = await socket(session, specialist)
        await join(ws)
        await ws.send_json_to({"type": "offer", "sdp": "v=0 offer"})
        candidate = {"candidate": "candidate:1 1 UDP 1 127.0.0.1 5000 typ host", "sdpMid": "0",
                     "sdpMLineIndex": 0}  # fmt: skip
        await ws.send_json_to({"type": "ice", "candidate": candidate})
        return [await layer.receive(broker), await layer.receive(broker)]

    offer, ice = run(scenario)

    assert offer == {
        "type": "media.signal",
        "appointment_id": session.pk,
        "participant_key": f"user:{specialist.pk}",
        "signal": {"type": "offer", "sdp": "v=0 offer"},
    }
    assert ice["signal"]["candidate"]["sdpMLineIndex"] == 0


def test_media_reply_reaches_only_its_participant(
    session: Appointment, specialist: User, clinician: User
):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        doctor, colleague = await socket(session, specialist), await socket(session, clinician)
        await join(doctor)
        await join(colleague)
        layer = get_channel_layer()
        # The clinician's answer goes out first: were it forwarded to everyone, it would be
        # the specialist's first media message.
        for user, sdp in ((clinician, "for the clinician"), (specialist, "for the specialist")):
            await layer.group_send(
                f"session.{session.pk}",
                {"type": "media.reply", "participant_key": f"user:{user.pk}",
                 "signal": {"type": "answer", "sdp": sdp}},
            )  # fmt: skip
        return await next_of(doctor, "media"), await next_of(colleague, "media")

    to_doctor, to_colleague = run(scenario)

    assert to_doctor == {"type": "media", "signal": {"type": "answer", "sdp": "for the specialist"}}
    assert to_colleague["signal"]["sdp"] == "for the clinician"


# --- reconnection and the audit log -----------------------------------------------------------


def test_late_close_of_an_old_socket_does_not_mark_a_reconnected_person_gone(
    session: Appointment, clinician: User
):
    async def scenario() -> None:
        old, new = await socket(session, clinician), await socket(session, clinician)
        await join(old)
        await join(new)  # the phone reconnected before the server noticed the old socket drop
        await old.disconnect()
        await still_open(new)

    run(scenario)

    assert SessionPresence.objects.get(user=clinician).state == "admitted"


def test_joining_is_audited_as_a_read_of_the_patients_consult(
    session: Appointment, clinician: User
):
    browser = joined_by_link(session)

    async def scenario() -> None:
        await join(await socket(session, clinician))
        await join(await socket(session, browser))

    run(scenario)

    joins = AuditEvent.objects.filter(detail__has_key="session_join").order_by("id")
    assert [(e.actor_user_id, e.channel) for e in joins] == [
        (clinician.pk, "websocket"),
        (None, "websocket"),
    ]
    assert joins[1].actor_label == "Asel Mamytova"
    assert {e.patient_id for e in joins} == {session.referral.patient_id}
