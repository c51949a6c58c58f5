"""Driving a video session's signaling socket from a test: the real ASGI application, a
browser's session cookie, and waits for the next message of a kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import User
from consults.models import Appointment
from telemed.asgi import application
from tests.conftest import logged_in_client


async def database_sync(work: Callable[[], Any]) -> Any:
    return await database_sync_to_async(work)()


async def socket(appointment: Appointment, who: User | Client | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1")]
    client = await database_sync(lambda: logged_in_client(who)) if isinstance(who, User) else who
    if client is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, f"/ws/sessions/{appointment.pk}/", headers=headers)


async def next_of(ws: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next message of type `kind`, skipping others (participant lists, history)."""
    while True:
        message = await ws.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message


async def own_state(ws: WebsocketCommunicator, state: str) -> dict[str, Any]:
    """The next participant list that shows this socket's own person in `state`."""
    while True:
        message = await next_of(ws, "participants")
        if message["state"] == state:
            return message


async def join(ws: WebsocketCommunicator) -> dict[str, Any]:
    connected, _ = await ws.connect()
    assert connected
    await ws.send_json_to({"type": "join"})
    return await next_of(ws, "joined")


async def doctor_and_admitted_patient(
    appointment: Appointment, doctor: User, browser: Client
) -> tuple[WebsocketCommunicator, WebsocketCommunicator, str]:
    """The doctor's socket and the patient's (`browser`, joined by link), both joined, the
    patient admitted by the doctor; and the patient's participant key."""
    doctor_ws = await socket(appointment, doctor)
    await join(doctor_ws)
    patient_ws = await socket(appointment, browser)
    key = (await join(patient_ws))["participant_key"]
    await doctor_ws.send_json_to({"type": "admit", "participant_key": key})
    await own_state(patient_ws, "admitted")
    return doctor_ws, patient_ws, key


async def answer_to(ws: WebsocketCommunicator, message: Any) -> dict[str, Any]:
    if isinstance(message, str):
        await ws.send_to(text_data=message)
    else:
        await ws.send_json_to(message)
    return await next_of(ws, "error")


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await scenario()

    return async_to_sync(main)()
