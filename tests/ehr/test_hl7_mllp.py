"""The MLLP listener over a real socket on 127.0.0.1, and the `hl7listener` command.

The listener runs in a thread of the test process, so the database work it does in its own
thread sees committed rows only: hence `django_db(transaction=True)`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import hl7
import pytest
from django.db import OperationalError
from hl7.mllp import open_hl7_connection

from ehr.hl7.server import MllpListener
from ehr.models import LabMessage, Observation, Patient
from tests.ehr.test_hl7_lab_results import oru_message

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def running_listener(allowed_clients: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[int]:
    """Our listener on a free port, in a background event loop; yields the port."""
    loop = asyncio.new_event_loop()
    listener = MllpListener(host="127.0.0.1", port=0, allowed_clients=allowed_clients)
    loop.run_until_complete(listener.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield listener.port
    finally:
        asyncio.run_coroutine_threadsafe(listener.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def send_framed(port: int, payload: bytes) -> bytes:
    """One MLLP exchange over a raw socket; returns what came back (b"" if closed or reset)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        try:
            connection.sendall(b"\x0b" + payload + b"\x1c\x0d")
            while not answer.endswith(b"\x1c\x0d"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass  # a refused client is cut off, possibly with its data unread
    return answer


def msa(answer: bytes) -> tuple[str, str]:
    ack = hl7.parse(answer.strip(b"\x0b\x1c\r").decode())
    return str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))


def test_oru_over_mllp_is_acknowledged_and_its_results_stored(patient: Patient):
    with running_listener() as port:
        answer = send_framed(port, oru_message(pin=patient.pin).encode())

    assert answer.startswith(b"\x0b")
    assert answer.endswith(b"\x1c\x0d")
    assert msa(answer) == ("AA", "MSG0001")
    cholesterol = Observation.objects.get(patient=patient, code="2093-3")
    assert cholesterol.value == Decimal("5.9")
    assert cholesterol.unit == "mmol/L"
    assert (cholesterol.reference_low, cholesterol.reference_high) == (Decimal(3), Decimal("5.2"))
    assert cholesterol.interpretation == "H"
    lab_message = LabMessage.objects.get()
    assert lab_message.channel == LabMessage.Channel.MLLP
    assert lab_message.sender == "127.0.0.1"


def test_same_message_twice_on_one_connection_is_aa_and_stored_once(patient: Patient):
    raw = oru_message(pin=patient.pin)

    async def exchange(port: int) -> list[hl7.Message]:
        reader, writer = await open_hl7_connection("127.0.0.1", port)
        acks = []
        for _ in range(2):
            writer.writemessage(hl7.parse(raw))
            await writer.drain()
            acks.append(await asyncio.wait_for(reader.readmessage(), timeout=10))
        writer.close()
        await writer.wait_closed()
        return acks

    with running_listener() as port:
        acks = asyncio.run(exchange(port))

    assert [str(ack.segment("MSA")(1)) for ack in acks] == ["AA", "AA"]
    assert Observation.objects.filter(patient=patient).count() == 3
    assert LabMessage.objects.count() == 2


def test_unknown_pin_over_mllp_is_ae_and_kept_unmatched(patient: Patient):
    with running_listener() as port:
        answer = send_framed(port, oru_message(pin="99999999999999").encode())

    assert msa(answer)[0] == "AE"
    assert LabMessage.objects.get().status == LabMessage.Status.UNMATCHED


def test_garbage_over_mllp_is_ar_and_kept_rejected(db: None):
    with running_listener() as port:
        answer = send_framed(port, b"\xff\xfe garbage \x00")

    assert msa(answer)[0] == "AR"
    lab_message = LabMessage.objects.get()
    assert lab_message.status == LabMessage.Status.REJECTED
    assert "MSH" in lab_message.error


def _stored() -> bool:
    # The test database is SQLite in memory with a shared cache: a read while the listener's
    # thread writes fails at once with "table is locked" instead of waiting. Ask again.
    try:
        return LabMessage.objects.exists()
    except OperationalError:
        return False


def test_message_cut_off_by_a_closed_connection_is_still_kept(patient: Patient):
    raw = oru_message(pin=patient.pin)

    with running_listener() as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"\x0b" + raw[:60].encode())
        deadline = time.monotonic() + 10
        while not _stored() and time.monotonic() < deadline:
            time.sleep(0.2)  # rarely, so the listener's write meets no read lock

    lab_message = LabMessage.objects.get()
    assert lab_message.raw == raw[:60]
    assert lab_message.status == LabMessage.Status.REJECTED


def test_client_not_on_the_allow_list_is_refused_and_nothing_stored(patient: Patient):
    with running_listener(allowed_clients=("10.20.30.0/24",)) as port:
        answer = send_framed(port, oru_message(pin=patient.pin).encode())

    assert answer == b""
    assert not LabMessage.objects.exists()
    assert not Observation.objects.exists()
