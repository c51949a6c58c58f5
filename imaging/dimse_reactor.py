"""Event-driven reactors for the associations our DIMSE server accepts (pynetdicom 3.0.4).

pynetdicom polls. Its DUL thread looks at the socket and at its queue of PDUs to send, and
sleeps 1 ms whenever there is nothing to do; the association thread sleeps 1 ms between looks
at the queue of received DIMSE messages. Every C-STORE waits out up to three of those sleeps
(the request arriving, the handler picking it up, the response going out) on top of the work.

Here both threads sleep until something happens instead: the DUL thread in `select` on the
association's socket and a wake-up socket written whenever a PDU is queued to be sent, and the
association thread on an event the DUL thread sets after each state machine action (which is
what fills the DIMSE and ACSE queues). Both still wake every MAX_WAIT seconds to check their
timers (ARTIM, network timeout), as the polling loops did.

The DUL thread also reads PDUs through a lane when one is set (`EventDrivenDUL.lane`, the
C-STORE fast lane of imaging/dimse_fast.py), which serves some itself and hands the others to
pynetdicom.

The two loops are copies of pynetdicom 3.0.4's (`DULServiceProvider.run_reactor`,
`Association._run_reactor`) with only their sleeps replaced (and a local abort of an
association already closing ignored): `use_event_driven_reactors`
refuses any other version, and tests/imaging/test_dimse_fast.py covers them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
from typing import Any

import pynetdicom
from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import InvalidEventError
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA

logger = logging.getLogger("pynetdicom.dul")

PYNETDICOM_VERSION = "3.0.4"

# Seconds a reactor sleeps at most before checking its timers again.
MAX_WAIT = 0.05


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL thread, sleeping in `select` rather than 1 ms at a time."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        # Set after every state machine action: the association thread waits on it.
        self.activity = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        # Reads the PDUs instead of pynetdicom when set (imaging/dimse_fast.py): an object
        # with read_pdu() and close().
        self.lane: Any = None

    def _read_pdu_data(self) -> None:
        if self.lane is None:
            super()._read_pdu_data()
        else:
            self.lane.read_pdu()

    def send_pdu(self, primitive) -> None:  # type: ignore[no-untyped-def]
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wake(self) -> None:
        # OSError: a wake-up is already pending (buffer full), or the reactor has ended.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _wait(self) -> None:
        """Sleep until the peer sends something, a PDU is queued to be sent, or MAX_WAIT."""
        watched: list[socket.socket] = [self._wake_reader]
        peer = self.socket.socket if self.socket is not None else None
        if peer is not None and peer.fileno() >= 0:
            if isinstance(peer, ssl.SSLSocket) and peer.pending():
                return  # TLS bytes already decrypted: select would not see them
            watched.append(peer)
        try:
            ready, _, _ = select.select(watched, [], [], MAX_WAIT)
        except (OSError, ValueError):  # the peer socket closed under us: the loop finds out
            return
        if self._wake_reader in ready:
            try:
                while self._wake_reader.recv(4096):
                    pass
            except OSError:  # drained
                pass

    def run_reactor(self) -> None:
        try:
            self._run_reactor()
        finally:
            self.activity.set()
            self._wake_writer.close()
            self._wake_reader.close()
            if self.lane is not None:
                self.lane.close()

    def _run_reactor(self) -> None:
        # pynetdicom 3.0.4's DULServiceProvider.run_reactor, with `self._wait()` for its sleep.
        self._idle_timer.start()
        sleep = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                sleep = True
            if sleep:
                self._wait()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                logger.error("Exception in DUL.run(), aborting association")
                logger.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                self.socket.send(abort_pdu.encode())  # type: ignore[union-attr]
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue
            try:
                self.state_machine.do_action(event)
            except InvalidEventError:
                # The server shutting down aborts every association, also one it has just
                # rejected and that waits for the peer to close (Sta13): there is nothing to
                # abort, and pynetdicom's state table has no entry for it.
                if (event, self.state_machine.current_state) != ("Evt15", "Sta13"):
                    raise
            self.activity.set()
            sleep = False


class EventDrivenAssociation(Association):
    """pynetdicom's acceptor association, waiting on its DUL's activity rather than polling."""

    dul: EventDrivenDUL

    def _run_reactor(self) -> None:
        # pynetdicom 3.0.4's Association._run_reactor, with a wait on the DUL's activity (then
        # a look at every queue) for its 1 ms sleep. Clearing before looking loses no wake-up:
        # anything queued after the clear sets the event again.
        activity = self.dul.activity
        self._is_paused = False
        while not self._kill:
            activity.wait(MAX_WAIT)
            activity.clear()

            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)  # type: ignore[arg-type]

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                logging.getLogger("pynetdicom.assoc").info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                message = "Association Aborted"
                if self.acse.is_aborted("a-p-abort"):
                    message += " (A-P-ABORT)"
                logging.getLogger("pynetdicom.assoc").info(message)
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                logging.getLogger("pynetdicom.assoc").error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


def _ui(tag: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def _us(tag: int, value: int) -> bytes:
    return struct.pack("<HHIH", 0x0000, tag, 2, value)


def encode_store_response(
    *, message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int
) -> bytes:
    """The command set of a C-STORE-RSP carrying only a status (implicit VR little endian,
    PS3.7 9.3.1.2), encoded as pynetdicom encodes it, without pydicom."""
    elements = b"".join(
        (
            _ui(0x0002, sop_class_uid) if sop_class_uid else b"",
            _us(0x0100, 0x8001),  # CommandField: C-STORE-RSP
            _us(0x0120, message_id),
            _us(0x0800, 0x0101),  # CommandDataSetType: no dataset
            _us(0x0900, status),
            _ui(0x1000, sop_instance_uid) if sop_instance_uid else b"",
        )
    )
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(elements)) + elements


def store_response_command(primitive: C_STORE) -> bytes | None:
    """`encode_store_response` for a response primitive; None when it carries more than a
    status (an error comment or offending element): pynetdicom encodes those."""
    if primitive.ErrorComment or primitive.OffendingElement:
        return None
    status = primitive.Status
    if not isinstance(status, int) or primitive.MessageIDBeingRespondedTo is None:
        return None
    return encode_store_response(
        message_id=primitive.MessageIDBeingRespondedTo,
        sop_class_uid=str(primitive.AffectedSOPClassUID or ""),
        sop_instance_uid=str(primitive.AffectedSOPInstanceUID or ""),
        status=status,
    )


class QuickStoreResponseDIMSE(DIMSEServiceProvider):
    """Sends C-STORE responses without building them as pydicom datasets first (which cost as
    much as keeping a small instance); everything else as pynetdicom does."""

    def send_msg(self, primitive, context_id: int) -> None:  # type: ignore[no-untyped-def]
        command = None
        if isinstance(primitive, C_STORE) and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            command = store_response_command(primitive)
        maximum = self.maximum_pdu_size
        if command is None or (maximum and len(command) + 7 > maximum):
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, b"\x03" + command))
        self.dul.send_pdu(pdata)


def use_event_driven_reactors(association: Association) -> Association:
    """Give a freshly created acceptor association (not started yet) the event-driven
    reactors. Returns it, or leaves it as it is under another pynetdicom version."""
    if pynetdicom.__version__ != PYNETDICOM_VERSION:
        logger.warning(
            "pynetdicom %s: the event-driven reactors are written for %s; polling instead",
            pynetdicom.__version__,
            PYNETDICOM_VERSION,
        )
        return association
    assert not association._started_dul, "the association's reactors are running already"
    polling, dul = association.dul, EventDrivenDUL(association)
    dul.socket = polling.socket
    # Queued already (not processed: the DUL thread has not started): the socket's
    # "connection open" (Evt5).
    dul.event_queue, dul.to_provider_queue = polling.event_queue, polling.to_provider_queue
    # Their timeouts were set from the AE's (acse_timeout, network_timeout) on the first DUL.
    dul.artim_timer, dul._idle_timer = polling.artim_timer, polling._idle_timer
    association.dul = dul
    association.__class__ = EventDrivenAssociation
    association.dimse.__class__ = QuickStoreResponseDIMSE
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        # pynetdicom's standard handlers describe every PDU and message for its log, at INFO
        # and DEBUG: formatted for nothing when those levels are off.
        for event, handler in (
            (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
            (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
            (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
            (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
        ):
            association.unbind(event, handler)
    return association
