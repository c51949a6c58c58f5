"""The C-STORE fast lane of our DIMSE server, in the DUL (socket reader) thread (pynetdicom 3.0.4).

pynetdicom turns each P-DATA-TF PDU into objects (PDU, primitive, DIMSE message, a pydicom
dataset for the command set, a C-STORE primitive), queues the message to the association
thread, builds an Event for the handler, and sends the response back the same way: for a
small instance that costs more CPU than keeping it. Here, an established association's
reader thread reads each PDU itself and, when it carries a C-STORE-RQ it fully understands,
parses the presentation data values (PS3.8 9.3.5, E.2) and the command set (PS3.7 9.3.1.1,
implicit VR little endian) by hand, collects the dataset fragments, calls the store function
and writes the C-STORE-RSP PDU to the socket, after the store function returned.

Everything else goes to pynetdicom exactly as it would have: a PDU the lane does not take is
decoded and queued as pynetdicom's own reader does (`_hand_over`). That is the case for any
other PDU or message (C-ECHO, C-FIND, C-MOVE, C-GET, release, abort), a command set with an
element or value the lane does not know, a context that is not for storage, a PDU holding
more than one message, and any association state but Sta6 with nothing else in progress. A
message the lane started but cannot finish (a fragment out of place, an abort mid-dataset) is
given back: pynetdicom's message assembler is fed what the lane consumed of it, then the PDU
(`_give_back`), so it sees the same byte stream it would have seen.

The lane also stands aside whenever something observes the association at a level it skips
(handlers bound to PDU, DIMSE or state machine events, as pynetdicom's standard loggers are
when its log is at INFO), or when a handler other than the one it replaces answers C-STORE.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pynetdicom import _config, evt
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from imaging.dimse_reactor import encode_store_response

if TYPE_CHECKING:
    from pynetdicom.association import Association

    from imaging.dimse_reactor import EventDrivenDUL

# pynetdicom's reader logs under this name: the lane's messages read as its would.
logger = logging.getLogger("pynetdicom.dul")
lane_logger = logging.getLogger(__name__)

P_DATA_TF = 0x04
# The PDU types PS3.8 9.3 defines; pynetdicom refuses any other at once (Evt19).
KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
C_STORE_RQ = 0x0001
NO_DATASET = 0x0101
# A status pynetdicom answers when the C-STORE handler raises.
HANDLER_FAILED = 0xC211
# The smallest maximum PDU length of a peer the lane answers: a C-STORE-RSP with two 64
# character UIDs is under 200 bytes; a peer wanting less gets pynetdicom's fragmenting.
MINIMUM_PEER_PDU = 1024
# PDU bodies up to this size are read into a buffer of their announced length; longer ones
# (more than our server allows) grow as their bytes arrive, as pynetdicom reads them.
PREALLOCATED_PDU = 4 << 20

# Command set elements (group 0000) of a C-STORE-RQ, PS3.7 9.3.1.1.
GROUP_LENGTH, SOP_CLASS, COMMAND_FIELD, MESSAGE_ID = 0x0000, 0x0002, 0x0100, 0x0110
PRIORITY, DATASET_TYPE, SOP_INSTANCE = 0x0700, 0x0800, 0x1000
MOVE_ORIGINATOR_AE, MOVE_ORIGINATOR_ID = 0x1030, 0x1031
REQUIRED = frozenset(
    (GROUP_LENGTH, SOP_CLASS, COMMAND_FIELD, MESSAGE_ID, PRIORITY, DATASET_TYPE, SOP_INSTANCE)
)
ALLOWED = REQUIRED | {MOVE_ORIGINATOR_AE, MOVE_ORIGINATOR_ID}
US_ELEMENTS = (COMMAND_FIELD, MESSAGE_ID, PRIORITY, DATASET_TYPE, MOVE_ORIGINATOR_ID)
# A conformant UID (PS3.5 9.1): anything else goes to pynetdicom, whose checks are laxer.
UID_PATTERN = re.compile(rb"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
AE_PATTERN = re.compile(rb" *[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]* *")

# Events raised for each PDU or message on pynetdicom's path, which the lane does not raise.
SKIPPED_EVENTS = (
    evt.EVT_DATA_RECV,
    evt.EVT_PDU_RECV,
    evt.EVT_FSM_TRANSITION,
    evt.EVT_DIMSE_RECV,
    evt.EVT_DIMSE_SENT,
    evt.EVT_PDU_SENT,
    evt.EVT_DATA_SENT,
)


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """The parts of a C-STORE-RQ command set the store function and the response need."""

    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    priority: int
    move_originator_ae: str | None
    move_originator_message_id: int | None


def parse_store_request(command: bytes) -> StoreRequest | None:
    """The C-STORE-RQ in this command set (implicit VR little endian), or None when it is
    anything else or holds anything the lane does not fully understand."""
    values: dict[int, bytes] = {}
    offset, end, previous = 0, len(command), -1
    while offset < end:
        if offset + 8 > end:
            return None
        group, element, length = struct.unpack_from("<HHI", command, offset)
        offset += 8
        if group != 0 or element <= previous or element not in ALLOWED or offset + length > end:
            return None
        values[element] = command[offset : offset + length]
        offset += length
        previous = element
    if not values.keys() >= REQUIRED:
        return None
    group_length = values[GROUP_LENGTH]
    if len(group_length) != 4 or int.from_bytes(group_length, "little") != end - 12:
        return None
    numbers = {}
    for element in US_ELEMENTS:
        if element in values:
            if len(values[element]) != 2:
                return None
            numbers[element] = int.from_bytes(values[element], "little")
    if numbers[COMMAND_FIELD] != C_STORE_RQ or numbers[DATASET_TYPE] == NO_DATASET:
        return None
    if numbers[PRIORITY] not in (0, 1, 2):
        return None
    sop_class_uid = _uid(values[SOP_CLASS])
    sop_instance_uid = _uid(values[SOP_INSTANCE])
    if sop_class_uid is None or sop_instance_uid is None:
        return None
    move_originator_ae = None
    if MOVE_ORIGINATOR_AE in values:
        raw = values[MOVE_ORIGINATOR_AE]
        if len(raw) > 16 or not AE_PATTERN.fullmatch(raw):
            return None
        move_originator_ae = raw.decode("ascii").strip()
    return StoreRequest(
        message_id=numbers[MESSAGE_ID],
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        priority=numbers[PRIORITY],
        move_originator_ae=move_originator_ae,
        move_originator_message_id=numbers.get(MOVE_ORIGINATOR_ID),
    )


def _uid(raw: bytes) -> str | None:
    value = raw.rstrip(b"\x00 ")
    if not 0 < len(value) <= 64 or not UID_PATTERN.fullmatch(value):
        return None
    return value.decode("ascii")


def store_response_pdu(*, context_id: int, request: StoreRequest, status: int) -> bytes:
    """A P-DATA-TF PDU holding the whole C-STORE-RSP command set in one PDV."""
    command = encode_store_response(
        message_id=request.message_id,
        sop_class_uid=request.sop_class_uid,
        sop_instance_uid=request.sop_instance_uid,
        status=status,
    )
    # PDU header, PDV item length, context ID, message control header: command, last.
    return struct.pack(">BxIIBB", P_DATA_TF, len(command) + 6, len(command) + 2, context_id, 3) + (
        command
    )


def parse_pdvs(body: memoryview) -> list[tuple[int, int, memoryview]] | None:
    """The presentation data values of a P-DATA-TF PDU's body as (context ID, message control
    header, data); None when the items do not exactly fill it."""
    pdvs = []
    offset, end = 0, len(body)
    while offset < end:
        if offset + 6 > end:
            return None
        (length,) = struct.unpack_from(">I", body, offset)
        if length < 2 or offset + 4 + length > end:
            return None
        pdvs.append((body[offset + 4], body[offset + 5], body[offset + 6 : offset + 4 + length]))
        offset += 4 + length
    return pdvs or None


# The store function: association, request, transfer syntax UID, the dataset in pieces
# (joined by the callee, once) -> DIMSE status.
StoreFunction = Callable[["Association", StoreRequest, str, Sequence[memoryview]], int]


class StoreLane:
    """Reads the PDUs of one association (the DUL's `_read_pdu_data`) and serves the
    C-STORE-RQs it fully understands itself; see the module docstring."""

    def __init__(
        self,
        dul: EventDrivenDUL,
        *,
        store: StoreFunction,
        replaces: Callable[..., object],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.dul = dul
        self.store = store
        self.replaces = replaces
        self.on_close = on_close
        # The message in progress: its context, command set, request and dataset fragments
        # (views of the PDU bodies they came in, joined once by the store function).
        self.context_id = 0
        self.command = b""
        self.request: StoreRequest | None = None
        self.fragments: list[memoryview] = []
        self.transfer_syntax = ""
        # Presentation context ID -> its transfer syntax (None: not accepted), and SOP class
        # UID -> whether pynetdicom serves it with its storage service class.
        self._contexts: dict[int, str | None] = {}
        self._storage_classes: dict[str, bool] = {}
        # Whether the peer takes a C-STORE-RSP in one PDU (None: not known yet).
        self._response_fits: bool | None = None
        # C-STORE-RQs the lane answered itself (the rest went to pynetdicom).
        self.served = 0

    @property
    def assoc(self) -> Association:
        return self.dul.assoc

    # --- Reading ---------------------------------------------------------------------------

    def read_pdu(self) -> None:
        """Read one PDU and serve it, or hand it to pynetdicom (its `_read_pdu_data`)."""
        dul = self.dul
        sock = dul.socket.socket if dul.socket is not None else None
        header = bytearray(6)
        if sock is None or not self._receive(sock, memoryview(header)):
            self._closed()
            return
        pdu_type, _, length = struct.unpack(">BBL", header)
        if pdu_type not in KNOWN_PDU_TYPES:
            self._give_back()
            logger.error(f"Unknown PDU type received '0x{pdu_type:02X}'")
            dul.event_queue.put("Evt19")
            return
        body = self._receive_body(sock, length)
        if body is None:
            logger.error("Connection closed before the entire PDU was received")
            self._closed()
            return
        if pdu_type == P_DATA_TF and self._take(memoryview(body)):
            return
        self._give_back()
        self._hand_over(header + body)

    def _receive(self, sock, view: memoryview) -> bool:  # type: ignore[no-untyped-def]
        """Fill `view` from the socket; False when the connection ends first."""
        try:
            while view:
                count = sock.recv_into(view)
                if not count:
                    return False
                view = view[count:]
        except (OSError, TimeoutError) as exc:
            logger.debug("reading a PDU: %s", exc)
            return False
        return True

    def _receive_body(self, sock, length: int) -> bytearray | None:  # type: ignore[no-untyped-def]
        if length <= PREALLOCATED_PDU:
            body = bytearray(length)
            return body if self._receive(sock, memoryview(body)) else None
        # A PDU longer than any we allow (a peer may claim up to 4 GB): memory only as it comes.
        body = bytearray()
        while len(body) < length:
            chunk = bytearray(min(length - len(body), PREALLOCATED_PDU))
            if not self._receive(sock, memoryview(chunk)):
                return None
            body += chunk
        return body

    def _closed(self) -> None:
        # Evt17, transport connection closed, as pynetdicom's reader says it. A message in
        # progress dies with the association: nothing of it was kept or acknowledged.
        self._reset()
        self.dul.event_queue.put("Evt17")

    def _hand_over(self, pdu: bytearray) -> None:
        # The end of pynetdicom 3.0.4's DULServiceProvider._read_pdu_data.
        dul = self.dul
        try:
            decoded, event = dul._decode_pdu(pdu)
            dul.event_queue.put(event)
        except Exception as exc:
            logger.error("Unable to decode the received PDU data")
            logger.exception(exc)
            dul.event_queue.put("Evt19")
            return
        dul._recv_pdu.put(decoded)

    # --- Serving ---------------------------------------------------------------------------

    def _take(self, body: memoryview) -> bool:
        """Serve this P-DATA-TF PDU's body if it belongs to a C-STORE the lane handles."""
        pdvs = parse_pdvs(body)
        if self.request is not None:
            if pdvs is None or self.dul.state_machine.current_state != "Sta6":
                return False  # given back by the caller
            if not self._add_fragments(pdvs, self.context_id):
                return False
        else:
            if pdvs is None or not self._may_start():
                return False
            context_id, control, data = pdvs[0]
            if control & 3 != 3:  # not a whole command set in one fragment
                return False
            command = bytes(data)
            request = parse_store_request(command)
            if request is None:
                return False
            transfer_syntax = self._storage_context(context_id, request.sop_class_uid)
            if transfer_syntax is None or not _fragments_fit(pdvs[1:], context_id):
                return False
            self.context_id, self.command, self.request = context_id, command, request
            self.transfer_syntax = transfer_syntax
            self.fragments = []
            self._add_fragments(pdvs[1:], context_id)
        if pdvs and pdvs[-1][1] & 2 and not pdvs[-1][1] & 1 and self.fragments:
            self._complete()
        return True

    def _add_fragments(self, pdvs: list[tuple[int, int, memoryview]], context_id: int) -> bool:
        if not _fragments_fit(pdvs, context_id):
            return False
        self.fragments.extend(data for _, _, data in pdvs)
        return True

    def _may_start(self) -> bool:
        dul, assoc = self.dul, self.assoc
        if dul.state_machine.current_state != "Sta6" or not assoc.is_established:
            return False
        # Nothing of pynetdicom's in progress: no event waiting, no message half assembled.
        if not dul.event_queue.empty() or assoc.dimse.message is not None:
            return False
        if assoc._sent_release or _config.UNRESTRICTED_STORAGE_SERVICE:
            return False
        if _config.STORE_RECV_CHUNKED_DATASET:
            return False
        if any(assoc.get_handlers(event) for event in SKIPPED_EVENTS):
            return False
        bound = assoc.get_handlers(evt.EVT_C_STORE)  # (handler, arguments), or [] if none
        if not bound or bound[0] is not self.replaces:
            return False
        if self._response_fits is None:  # the peer's maximum, fixed once negotiated
            maximum = assoc.dimse.maximum_pdu_size
            self._response_fits = not maximum or maximum >= MINIMUM_PEER_PDU
        return self._response_fits

    def _storage_context(self, context_id: int, sop_class_uid: str) -> str | None:
        """The transfer syntax of an accepted context, when pynetdicom would answer a C-STORE
        of `sop_class_uid` on it with its storage service class."""
        assoc = self.assoc
        if context_id not in self._contexts:
            context = assoc._accepted_cx.get(context_id)
            self._contexts[context_id] = str(context.transfer_syntax[0]) if context else None
        transfer_syntax = self._contexts[context_id]
        if transfer_syntax is None:
            return None
        is_storage = self._storage_classes.get(sop_class_uid)
        if is_storage is None:
            is_storage = uid_to_service_class(sop_class_uid) is StorageServiceClass
            self._storage_classes[sop_class_uid] = is_storage
        if not is_storage:
            return None
        if sop_class_uid in assoc.acceptor.accepted_common_extended:
            return None
        return transfer_syntax

    def _complete(self) -> None:
        request, fragments = self.request, self.fragments
        context_id, transfer_syntax = self.context_id, self.transfer_syntax
        self._reset()
        assert request is not None
        self.served += 1
        try:
            status = self.store(self.assoc, request, transfer_syntax, fragments)
        except Exception as exc:
            logger.error("Exception in handler bound to 'evt.EVT_C_STORE'")
            logger.exception(exc)
            status = HANDLER_FAILED
        else:
            if not self.assoc.is_established:
                return  # aborted meanwhile: pynetdicom would not answer either
        # Only now, with the instance kept, is it acknowledged.
        pdu = store_response_pdu(context_id=context_id, request=request, status=status)
        sock = self.dul.socket.socket if self.dul.socket is not None else None
        try:
            if sock is None:
                raise OSError("socket closed")
            sock.sendall(pdu)
        except OSError:
            self.dul.event_queue.put("Evt17")

    def _reset(self) -> None:
        self.request, self.fragments, self.command = None, [], b""

    def _give_back(self) -> None:
        """Hand a message in progress to pynetdicom's assembler, as if it had read it all."""
        if self.request is None:
            return
        pdvs: list[list] = [[self.context_id, b"\x03" + self.command]]
        if self.fragments:
            pdvs.append([self.context_id, b"\x00" + b"".join(self.fragments)])
        self._reset()
        primitive = P_DATA()
        primitive.presentation_data_value_list = pdvs
        message = DIMSEMessage()
        message.decode_msg(primitive, self.assoc)  # incomplete: no last dataset fragment yet
        self.assoc.dimse.message = message

    def close(self) -> None:
        """The reader thread ends: let go of what the store function holds for it."""
        self._reset()
        lane_logger.debug("association ended: %d C-STORE requests in the fast lane", self.served)
        if self.on_close is not None:
            self.on_close()


def _fragments_fit(pdvs: list[tuple[int, int, memoryview]], context_id: int) -> bool:
    """Whether these are dataset fragments of one message on `context_id`, the last fragment
    (if any) being the last of them."""
    final = len(pdvs) - 1
    for index, (pdv_context, control, _) in enumerate(pdvs):
        if pdv_context != context_id or control & 1:
            return False
        if control & 2 and index != final:
            return False
    return True
