"""Our DIMSE server (pynetdicom): C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET.

Thin edges: the handlers translate DICOM messages, call services (imaging.services.ingest,
imaging.services.nodes, imaging.services.query) and translate the result into DIMSE statuses.

- Association: only registered, active AE titles (from their host, when the node has one) are
  accepted; anything else gets an A-ASSOCIATE-RJ "calling AE title not recognized", audited.
- C-STORE keeps the bytes exactly as received and queues their ingest in batches (every
  BATCH_SIZE files, and when the association is released or aborted), so a long association
  becomes queryable as it goes. The hot path avoids pydicom and pynetdicom's polling: PDUs of
  up to MAXIMUM_PDU_SIZE, event-driven reactors and quick C-STORE responses
  (imaging/dimse_reactor.py), the file meta header built by hand (`file_meta_header`), and
  the C-STORE fast lane (imaging/dimse_fast.py: C-STORE-RQs read, kept and answered in the
  association's reader thread; setting DICOM_FAST_STORE, on unless set to False). Both
  paths keep an instance through `store_received`.
- C-FIND, C-MOVE and C-GET see only `studies_for_node(node)`; every answer is audited.

Handlers run in pynetdicom's threads, one per association: the thread keeps its database
connection for the association's life and closes it at the end (or at once after a database
error). The fast lane's reader thread does the same with a connection of its own.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connections
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import (
    AE,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
    build_context,
    evt,
)
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from accounts.request_context import request_context
from imaging.dicom.transcode import NotTranscodable, transcode
from imaging.dimse_fast import StoreLane, StoreRequest
from imaging.dimse_reactor import EventDrivenDUL, use_event_driven_reactors
from imaging.models import DicomNode, Instance, ReceivedFile
from imaging.services.files import load_dataset
from imaging.services.ingest import queue_ingest_of, receive_file
from imaging.services.nodes import (
    FindRefused,
    RetrieveRefused,
    authorize_association,
    find_responses,
    instances_to_retrieve,
    move_destination_for,
    record_refused_service,
)

logger = logging.getLogger(__name__)

# Ingest is queued for this many received files at a time (and at the end of an association).
BATCH_SIZE = 50

# The largest P-DATA PDU a peer may send us. pynetdicom's default (16382) cuts a 512 KB CT
# slice into 32 PDUs, each costing a trip through its reactor; dcmtk's storescu sends up to
# 128 KB whatever we allow, a pynetdicom sender up to this.
MAXIMUM_PDU_SIZE = 1 << 20

STORAGE_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLossless,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEG2000,
    # Last: a pynetdicom sender offered deflate compresses in Python (~100 ms per CT image).
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
UNCOMPRESSED_OTHERS = [DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]

PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
}
QUERY_RETRIEVE_MODELS = [
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
]

# DIMSE statuses (PS3.4 Annexes B and C, PS3.7 C).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCELLED = 0xFE00
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH = 0xA900
MOVE_DESTINATION_UNKNOWN = 0xA801
UNABLE_TO_PROCESS = 0xC000


def set_nodelay(sock: socket.socket | None) -> None:
    # DIMSE writes the command and the dataset, then waits: with Nagle's algorithm each
    # instance stalls ~40 ms for a delayed ACK (STACK-NOTES, "DICOM networking").
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class AssociationState:
    """What we know about one accepted association: the node it acts for, and the received
    files whose ingest is not queued yet."""

    node: DicomNode
    address: str
    pending: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused_services: set[str] = field(default_factory=set)
    ended: bool = False

    def refuse(self, service: str) -> int:
        """Audit (once per association and service) a request the node may not make."""
        if service not in self.refused_services:
            self.refused_services.add(service)
            record_refused_service(node=self.node, service=service, address=self.address)
        return NOT_AUTHORIZED


_states: weakref.WeakKeyDictionary[Association, AssociationState] = weakref.WeakKeyDictionary()


@contextmanager
def _database_work(address: str | None) -> Iterator[None]:
    # Each association has its own thread, and its own database connection, kept for the
    # association's life (closed in handle_association_end): opening one per C-STORE cost
    # more than the rest of the request. A connection broken by an error is dropped at once.
    # The address goes to the audit log.
    try:
        with request_context(ip_address=address, channel="dicom"):
            yield
    except (DatabaseError, InterfaceError):
        connections.close_all()
        raise


class NodeCheckingACSE(ACSE):
    """Accepts an association only from a registered node (PS3.8 7.1.1.9: "calling AE title
    not recognized" otherwise). pynetdicom's `require_calling_aet` is a fixed list and knows no
    addresses, so the check happens here, before the presentation contexts are negotiated."""

    def _negotiate_as_acceptor(self) -> None:
        request = self.requestor.primitive
        calling_ae = str(request.calling_ae_title or "").strip()
        address = self.assoc.requestor.address
        self.requestor.ae_title = calling_ae
        try:
            with _database_work(address):
                node = authorize_association(calling_ae=calling_ae, address=address)
        except Exception:
            # The database is unreachable: ask the sender to try again later, rather than
            # letting the association thread die with the socket open.
            logger.exception("association from %s as %r could not be checked", address, calling_ae)
            self._reject(0x02, 0x03, 0x01)  # rejected-transient, provider, temporary congestion
            return
        if node is None:
            self._reject(0x01, 0x01, 0x03)  # rejected-permanent, user, calling AE not recognized
            return
        _states[self.assoc] = AssociationState(node=node, address=address)
        super()._negotiate_as_acceptor()

    def _reject(self, result: int, source: int, reason: int) -> None:
        self.send_reject(result, source, reason)
        evt.trigger(self.assoc, evt.EVT_REJECTED, {})
        self.assoc.kill()


class _RequestHandler(RequestHandler):
    server: ThreadedAssociationServer

    def _create_association(self) -> Association:
        association = use_event_driven_reactors(super()._create_association())
        set_nodelay(self.request)
        association.acse = NodeCheckingACSE(association)
        if getattr(self.server, "fast_store", False) and isinstance(
            association.dul, EventDrivenDUL
        ):
            # C-STORE served in the association's reader thread (imaging/dimse_fast.py),
            # which then has a database connection of its own, closed when it ends.
            association.dul.lane = StoreLane(
                association.dul,
                store=_store_from_fast_lane,
                replaces=handle_store,
                on_close=_close_thread_connections,
            )
        return association


def _close_thread_connections() -> None:
    try:
        connections.close_all()
    except Exception:
        logger.exception("closing a DICOM reader thread's database connections")


def _state(association: Association) -> AssociationState:
    return _states[association]


# --- C-ECHO, C-STORE -------------------------------------------------------------------------


def handle_echo(event: evt.Event) -> int:
    return SUCCESS


def handle_store(event: evt.Event) -> int:
    """C-STORE on pynetdicom's path (the fast lane stood aside, or is off)."""
    request = event.request
    try:
        dataset: list[bytes] | None = [request.DataSet.getvalue()]
    except Exception:
        dataset = None
    return store_received(
        state=_state(event.assoc),
        sop_class_uid=str(request.AffectedSOPClassUID or ""),
        sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
        transfer_syntax_uid=str(event.context.transfer_syntax),
        dataset=dataset,
    )


def _store_from_fast_lane(
    association: Association,
    request: StoreRequest,
    transfer_syntax_uid: str,
    dataset: Sequence[memoryview],
) -> int:
    return store_received(
        state=_state(association),
        sop_class_uid=request.sop_class_uid,
        sop_instance_uid=request.sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        dataset=dataset,
    )


def store_received(
    *,
    state: AssociationState,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    dataset: Sequence[bytes | memoryview] | None,
) -> int:
    """Keep one instance received over C-STORE (the dataset's bytes as they came over the
    wire, in one piece or several) and return the DIMSE status to answer with. Called by
    pynetdicom's handler and by the fast lane alike; returns only once the file is kept."""
    with _database_work(state.address):
        if not state.node.may_store:
            return state.refuse("C-STORE")
        if dataset is None:
            logger.error("C-STORE of %s from %s: no dataset", sop_instance_uid, state.address)
            return UNABLE_TO_PROCESS
        # The bytes as they came over the wire, with a file meta header: never decoded.
        # Joined once, from the fragments of the PDUs they arrived in.
        header = file_meta_header(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
        )
        content = b"".join((header, *dataset))
        try:
            received = receive_file(
                content=content,
                source=ReceivedFile.Source.STORE,
                organization=state.node.organization,
                calling_ae=state.node.ae_title,
                original_name=f"{sop_instance_uid}.dcm" if sop_instance_uid else "",
                queue_ingest=False,
            )
        except Exception:
            logger.exception("C-STORE of %s could not be kept", sop_instance_uid)
            return OUT_OF_RESOURCES
        with state.lock:
            state.pending.append(received.pk)
            # After the association's end (an abort while this file was being written) no
            # one else will queue it.
            queue_now = state.ended or len(state.pending) >= BATCH_SIZE
        if queue_now:
            _queue_pending(state)
    return SUCCESS


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    # Explicit VR little endian, as file meta always is (PS3.10 7.1).
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, tag, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, tag, vr, len(value)) + value


def _padded(value: str, pad: bytes) -> bytes:
    encoded = value.encode("ascii")
    return encoded + pad if len(encoded) % 2 else encoded


def file_meta_header(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str
) -> bytes:
    """Preamble, "DICM" and file meta information for a dataset received over DIMSE: the bytes
    pynetdicom's `Event.encoded_dataset(include_meta=True)` puts before the dataset, built
    without pydicom (which cost as much as the rest of storing a small instance)."""
    elements = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _padded(sop_class_uid, b"\x00")),
            _element(0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),
            _element(0x0010, b"UI", _padded(transfer_syntax_uid, b"\x00")),
            _element(0x0012, b"UI", _padded(PYNETDICOM_IMPLEMENTATION_UID, b"\x00")),
            _element(0x0013, b"SH", _padded(PYNETDICOM_IMPLEMENTATION_VERSION, b" ")),
        )
    )
    group_length = _element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"\x00" * 128 + b"DICM" + group_length + elements


def _queue_pending(state: AssociationState) -> None:
    with state.lock:
        ids, state.pending = state.pending, []
    if not ids:
        return
    try:
        queue_ingest_of(ids)
    except Exception:
        # Kept files wait for the ingest sweep (imaging.tasks.ingest_waiting_files).
        logger.exception("ingest of %d received files could not be queued", len(ids))


def handle_acse_received(event: evt.Event) -> None:
    # A release request: queue what is left before we answer, so that when the sender's
    # storescu returns, the last files are on their way to the index.
    primitive = event.primitive
    state = _states.get(event.assoc)
    if state is not None and isinstance(primitive, A_RELEASE) and primitive.result is None:
        with _database_work(state.address):
            _queue_pending(state)


def handle_association_end(event: evt.Event) -> None:
    state = _states.pop(event.assoc, None)
    if state is not None:
        with state.lock:
            state.ended = True
        with _database_work(state.address):
            _queue_pending(state)
    connections.close_all()  # this thread's connections: the thread ends with the association


def handle_association_rejected(event: evt.Event) -> None:
    connections.close_all()  # this thread's connections: the thread ends with the association


def handle_connection_open(event: evt.Event) -> None:
    socket_wrapper = event.assoc.dul.socket
    set_nodelay(getattr(socket_wrapper, "socket", None))


# --- C-FIND ----------------------------------------------------------------------------------


def handle_find(event: evt.Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    state = _state(event.assoc)
    is_patient_root = event.request.AffectedSOPClassUID in PATIENT_ROOT
    with _database_work(state.address):
        if not state.node.may_query:
            responses: list[Dataset] | int = state.refuse("C-FIND")
        else:
            try:
                responses = find_responses(
                    node=state.node,
                    identifier=event.identifier,
                    is_patient_root=is_patient_root,
                    retrieve_ae_title=event.assoc.acceptor.ae_title,
                )
            except FindRefused as refusal:
                responses = _failure(refusal.status, str(refusal))
    if not isinstance(responses, list):
        yield responses, None
        return
    for response in responses:
        if event.is_cancelled:
            yield CANCELLED, None
            return
        yield PENDING, response


def _failure(status: int, comment: str) -> Any:
    result = Dataset()
    result.Status = status
    result.ErrorComment = comment[:64]
    return result


# --- C-MOVE and C-GET ------------------------------------------------------------------------


def _retrieve(
    state: AssociationState, identifier: Dataset, service: str, detail: dict[str, Any]
) -> list[Instance] | Dataset | int:
    """The instances to send, or the failure status to answer with. Audited."""
    if not state.node.may_query:
        return state.refuse(service)
    try:
        return instances_to_retrieve(
            node=state.node, identifier=identifier, service=service, detail=detail
        )
    except RetrieveRefused as refusal:
        return _failure(IDENTIFIER_DOES_NOT_MATCH, str(refusal))


def _has_context(association: Association, sop_class: str, transfer_syntax: str) -> bool:
    """Whether the peer accepted `sop_class` in exactly `transfer_syntax` with us as SCU."""
    return any(
        context.abstract_syntax == sop_class
        and context.transfer_syntax[0] == transfer_syntax
        and context.as_scu
        for context in association.accepted_contexts
    )


def _transcode(dataset: Dataset, transfer_syntax: UID) -> Dataset | None:
    sop_instance_uid = dataset.SOPInstanceUID
    try:
        result = transcode(dataset, transfer_syntax)
    except NotTranscodable as error:
        logger.warning("cannot transcode %s: %s", sop_instance_uid, error)
        return None
    # The same instance in another encoding keeps its UID (pydicom's decompress() makes a new
    # one by default): a viewer must see one instance, whichever way it travelled.
    result.SOPInstanceUID = sop_instance_uid
    result.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    return result


def _dataset_for(association: Association, instance: Instance) -> Dataset | None:
    """The instance as stored, in a presentation context the peer accepted; decompressed when
    the peer does not take its transfer syntax; None when it cannot be sent."""
    try:
        dataset = load_dataset(instance)
    except Exception:
        logger.exception("instance %s could not be read", instance.sop_instance_uid)
        return None
    stored = UID(dataset.file_meta.TransferSyntaxUID)
    if _has_context(association, instance.sop_class_uid, stored):
        return dataset
    for target in [ExplicitVRLittleEndian, ImplicitVRLittleEndian, *UNCOMPRESSED_OTHERS]:
        if _has_context(association, instance.sop_class_uid, target):
            # pynetdicom re-encodes between uncompressed syntaxes of the same byte order.
            if stored.is_compressed or stored.is_little_endian != target.is_little_endian:
                return _transcode(dataset, target)
            return dataset
    return None


def _contexts_for(instances: list[Instance]) -> list:
    """Presentation contexts to propose to a move destination: each SOP class in its stored
    (compressed) transfer syntax, and uncompressed as a fallback. At most 128 (PS3.8 9.3.2.2)."""
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for sop_class, stored in {(i.sop_class_uid, i.transfer_syntax_uid) for i in instances}:
        if UID(stored).is_compressed:
            wanted[(sop_class, (stored,))] = None
    for sop_class in sorted({i.sop_class_uid for i in instances}):
        wanted[(sop_class, tuple(UNCOMPRESSED))] = None
    return [build_context(sop, list(syntaxes)) for sop, syntaxes in list(wanted)[:128]]


def _send(
    association: Callable[[], Association | None], instances: list[Instance], event: evt.Event
) -> Iterator[tuple[int, Dataset | None]]:
    for instance in instances:
        if event.is_cancelled:
            yield CANCELLED, None
            return
        peer = association()
        dataset = _dataset_for(peer, instance) if peer is not None else None
        # A pending status without a dataset counts as a failed sub-operation.
        yield PENDING, dataset


def handle_move(event: evt.Event) -> Iterator[Any]:
    state = _state(event.assoc)
    destination_ae = str(event.move_destination or "").strip()
    with _database_work(state.address):
        destination = move_destination_for(node=state.node, ae_title=destination_ae)
        if destination is None and not state.node.may_query:
            # Answered 0xA801 below (pynetdicom needs a destination before any status), but
            # a node that may not retrieve at all is audited as refused, too.
            state.refuse("C-MOVE")
        if destination is None:
            # An unknown move destination must be refused with 0xA801.
            logger.warning("C-MOVE from %s to unknown %r", state.node, destination_ae)
            result: list[Instance] | Dataset | int = MOVE_DESTINATION_UNKNOWN
        else:
            result = _retrieve(state, event.identifier, "C-MOVE", {"destination": destination_ae})
    if destination is None:
        yield None, None
        return
    established: dict[str, Association] = {}

    def on_established(established_event: evt.Event) -> None:
        established["association"] = established_event.assoc

    instances = result if isinstance(result, list) else []
    options = {
        "contexts": _contexts_for(instances) or [build_context(Verification)],
        "evt_handlers": [
            (evt.EVT_CONN_OPEN, handle_connection_open),
            (evt.EVT_ESTABLISHED, on_established),
        ],
    }
    yield destination.host, destination.port, options
    if not isinstance(result, list):
        yield 1
        yield result, None
        return
    yield len(instances)
    yield from _send(lambda: established.get("association"), instances, event)


def handle_get(event: evt.Event) -> Iterator[Any]:
    state = _state(event.assoc)
    with _database_work(state.address):
        result = _retrieve(state, event.identifier, "C-GET", {})
    if not isinstance(result, list):
        yield 1
        yield result, None
        return
    yield len(result)
    yield from _send(lambda: event.assoc, result, event)


# --- The server ------------------------------------------------------------------------------

HANDLERS = [
    (evt.EVT_CONN_OPEN, handle_connection_open),
    (evt.EVT_C_ECHO, handle_echo),
    (evt.EVT_C_STORE, handle_store),
    (evt.EVT_C_FIND, handle_find),
    (evt.EVT_C_MOVE, handle_move),
    (evt.EVT_C_GET, handle_get),
    (evt.EVT_ACSE_RECV, handle_acse_received),
    (evt.EVT_RELEASED, handle_association_end),
    (evt.EVT_ABORTED, handle_association_end),
    (evt.EVT_REJECTED, handle_association_rejected),
]


def application_entity(ae_title: str) -> AE:
    ae = AE(ae_title=ae_title)
    ae.maximum_associations = 20
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        # scp_role: a C-GET requestor acts as the storage SCP on its own association.
        ae.add_supported_context(
            context.abstract_syntax, STORAGE_TRANSFER_SYNTAXES, scu_role=False, scp_role=True
        )
    for model in QUERY_RETRIEVE_MODELS:
        ae.add_supported_context(model)
    return ae


class DicomServer:
    """Our SCP, bound to `host:port` (port 0: a free one) on construction (OSError if taken)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ae_title: str | None = None,
        fast_store: bool | None = None,
    ) -> None:
        self.ae = application_entity(ae_title or settings.DICOM_AE_TITLE)
        self.server = self.ae.make_server(
            (host, port),
            evt_handlers=HANDLERS,
            server_class=ThreadedAssociationServer,
            request_handler=_RequestHandler,
        )
        # The C-STORE fast lane (imaging/dimse_fast.py); off: pynetdicom's path for all.
        if fast_store is None:
            fast_store = settings.DICOM_FAST_STORE
        self.server.fast_store = fast_store
        self.ae._servers.append(self.server)  # as ae.start_server does, for ae.shutdown()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="dicom-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.ae.shutdown()  # aborts the associations, stops and closes the server
        if self._thread is not None:
            self._thread.join(timeout=10)
