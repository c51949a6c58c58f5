"""The quick C-STORE path of our DIMSE server: large PDUs, the event-driven reactors
(imaging/dimse_reactor.py, written against pynetdicom 3.0.4), the file meta and the C-STORE
response encoded without pydicom — each must give what pynetdicom's own path gives."""

from __future__ import annotations

import logging
import struct
from copy import deepcopy
from io import BytesIO
from pathlib import Path
from typing import Any

import pynetdicom
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import create_file_meta, decode, encode, encode_file_meta
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import Verification

from accounts.models import AuditEvent, Organization
from imaging.dimse import MAXIMUM_PDU_SIZE, DicomServer, file_meta_header
from imaging.dimse_fast import parse_store_request, store_response_pdu
from imaging.dimse_reactor import PYNETDICOM_VERSION, store_response_command
from imaging.models import Instance, ReceivedFile
from tests.factories.imaging import ct_dataset, register_node
from tests.imaging.dimse_fixtures import (
    AE_TITLE,
    dcmtk,
    dicom_server,
    eventually,
    p_data_tf,
    plain_dicom_server,
    send_raw,
    server_association,
    stored_bytes,
    write_files,
)

__all__ = ["dicom_server", "plain_dicom_server"]

UIDS = [
    (CTImageStorage, "1.2.3.4", ExplicitVRLittleEndian),  # odd lengths: padded with a NUL
    (SecondaryCaptureImageStorage, "1.2.3.45", ImplicitVRLittleEndian),  # even lengths
    (CTImageStorage, "1.2.826.0.1.3680043.8.498.1234567890123456789012345", JPEGBaseline8Bit),
]


def test_the_reactors_are_written_for_the_installed_pynetdicom():
    assert pynetdicom.__version__ == PYNETDICOM_VERSION


@pytest.mark.parametrize(("sop_class", "sop_instance", "transfer_syntax"), UIDS)
def test_file_meta_header_is_the_one_pynetdicom_writes(
    sop_class: str, sop_instance: str, transfer_syntax: str
):
    meta = create_file_meta(
        sop_class_uid=UID(sop_class),
        sop_instance_uid=UID(sop_instance),
        transfer_syntax=UID(transfer_syntax),
    )

    header = file_meta_header(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=transfer_syntax
    )

    assert header == b"\x00" * 128 + b"DICM" + encode_file_meta(meta)


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0x0124, 0xC000])
@pytest.mark.parametrize(("sop_class", "sop_instance", "_"), UIDS)
def test_store_response_is_encoded_as_pynetdicom_encodes_it(
    status: int, sop_class: str, sop_instance: str, _: str
):
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 7
    response.AffectedSOPClassUID = sop_class
    response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(response)

    assert store_response_command(response) == encode(message.command_set, True, True)


def test_a_response_with_an_error_comment_is_left_to_pynetdicom():
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 7
    response.Status = 0xC000
    response.ErrorComment = "cannot keep it"

    assert store_response_command(response) is None


@pytest.mark.django_db(transaction=True)
def test_a_large_instance_in_large_pdus_is_kept_byte_for_byte(
    clinic: Organization, dicom_server: DicomServer, tmp_path: Path
):
    register_node(clinic, "CT_ATBASHY")
    # 512 KB of pixels: storescu sends it in PDUs of up to 128 KB, the most it sends.
    [path] = write_files(tmp_path / "out", [ct_dataset(size=512, patient_id="P-1")])
    sent = path.read_bytes()

    result = dcmtk("storescu", "-aet", "CT_ATBASHY", "-aec", AE_TITLE, "127.0.0.1",
                   dicom_server.port, path)  # fmt: skip

    assert result.returncode == 0, result.stderr
    sop_instance_uid = dcmread(path).SOPInstanceUID
    instance = eventually(
        lambda: (
            Instance.objects.select_related("received_file")
            .filter(sop_instance_uid=sop_instance_uid)
            .first()
        )
    )
    assert instance is not None
    with instance.received_file.file.open("rb") as stored_file:
        stored = stored_file.read()
    # The dataset after the file meta is exactly what storescu sent.
    sent_meta_end = 132 + 12 + int.from_bytes(sent[140:144], "little")
    stored_meta_end = 132 + 12 + int.from_bytes(stored[140:144], "little")
    assert stored[stored_meta_end:] == sent[sent_meta_end:]
    assert dcmread(instance.received_file.file.path).file_meta.MediaStorageSOPInstanceUID == (
        sop_instance_uid
    )


@pytest.mark.django_db(transaction=True)
def test_a_pynetdicom_sender_may_send_pdus_of_a_megabyte(
    clinic: Organization, dicom_server: DicomServer
):
    register_node(clinic, "CT_ATBASHY")
    ae = AE(ae_title="CT_ATBASHY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    dataset = ct_dataset(size=512, patient_id="P-2")
    association = ae.associate("127.0.0.1", dicom_server.port, ae_title=AE_TITLE)
    try:
        assert association.is_established
        assert association.acceptor.maximum_length == MAXIMUM_PDU_SIZE

        status = association.send_c_store(dataset)
    finally:
        association.release()

    assert status.Status == 0x0000
    instance = eventually(
        lambda: Instance.objects.filter(sop_instance_uid=dataset.SOPInstanceUID).first()
    )
    assert instance is not None
    assert dcmread(instance.received_file.file.path).PixelData == dataset.PixelData


@pytest.mark.django_db(transaction=True)
def test_an_idle_association_still_times_out(clinic: Organization, dicom_server: DicomServer):
    # The reactors sleep until something happens, but still watch their timers.
    register_node(clinic, "CT_ATBASHY")
    dicom_server.ae.network_timeout = 0.5
    ae = AE(ae_title="CT_ATBASHY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", dicom_server.port, ae_title=AE_TITLE)
    try:
        assert association.is_established

        assert eventually(lambda: association.is_aborted, seconds=30)
    finally:
        if association.is_established:
            association.abort()


# --- The C-STORE fast lane (imaging/dimse_fast.py) -------------------------------------------

LANE_LOG = "imaging.dimse_fast"


def _store_command(
    message_id: int = 7,
    sop_class: str = CTImageStorage,
    sop_instance: str = "1.2.3.4",
    **extra: object,
) -> Dataset:
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = sop_class
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Priority = 0
    for keyword, value in extra.items():
        setattr(primitive, keyword, value)
    primitive.DataSet = BytesIO(b"\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return message.command_set


def _encoded(command_set: Dataset) -> bytes:
    """The command set with its group length computed afresh."""
    command_set = deepcopy(command_set)
    del command_set.CommandGroupLength
    elements = encode(command_set, True, True)
    return struct.pack("<HHII", 0, 0, 4, len(elements)) + elements


@pytest.mark.parametrize(
    "extra",
    [{}, {"MoveOriginatorApplicationEntityTitle": "PACS", "MoveOriginatorMessageID": 9}],
)
@pytest.mark.parametrize(("sop_class", "sop_instance", "_"), UIDS)
def test_a_store_request_is_read_as_pydicom_reads_it(
    extra: dict, sop_class: str, sop_instance: str, _: str
):
    command_set = _store_command(31, sop_class, sop_instance, **extra)

    request = parse_store_request(encode(command_set, True, True))

    read = decode(BytesIO(encode(command_set, True, True)), True, True)
    assert request is not None
    assert request.message_id == read.MessageID == 31
    assert request.sop_class_uid == read.AffectedSOPClassUID
    assert request.sop_instance_uid == read.AffectedSOPInstanceUID
    assert request.priority == read.Priority
    assert request.move_originator_ae == read.get("MoveOriginatorApplicationEntityTitle")
    assert request.move_originator_message_id == read.get("MoveOriginatorMessageID")


def _with(**changes: object) -> bytes:
    command_set = _store_command()
    for keyword, value in changes.items():
        setattr(command_set, keyword, value)
    return _encoded(command_set)


def _with_instance_uid(value: bytes) -> bytes:
    # Encoded by hand: pydicom warns about such values.
    command = encode(_store_command(sop_instance="1.2.3.4"), True, True)
    old = struct.pack("<HHI", 0, 0x1000, 8) + b"1.2.3.4\x00"
    new = struct.pack("<HHI", 0, 0x1000, len(value)) + value
    elements = command[12:].replace(old, new)
    return struct.pack("<HHII", 0, 0, 4, len(elements)) + elements


def _echo_command() -> bytes:
    primitive = C_ECHO()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(_echo_command(), id="C-ECHO"),
        pytest.param(_with(CommandDataSetType=0x0101), id="no dataset"),
        pytest.param(_with(MoveDestination="ELSEWHERE"), id="an element C-STORE has not"),
        pytest.param(_with(Priority=3), id="unknown priority"),
        pytest.param(_with_instance_uid(b"1.2.03.4"), id="non-conformant UID"),
        pytest.param(_with_instance_uid(b"1." + b"2" * 70), id="UID too long"),
        pytest.param(encode(_store_command(), True, True)[:-3], id="truncated"),
        pytest.param(b"\x00\x00\x00\x00\x04\x00\x00\x00\x99\x00\x00\x00"
                     + encode(_store_command(), True, True)[12:], id="wrong group length"),
    ],
)  # fmt: skip
def test_commands_the_lane_does_not_fully_understand_are_left_to_pynetdicom(command: bytes):
    assert parse_store_request(command) is None


@pytest.mark.parametrize("status", [0x0000, 0x0124, 0xA700])
@pytest.mark.parametrize(("sop_class", "sop_instance", "_"), UIDS)
def test_the_store_response_pdu_is_the_one_pynetdicom_sends(
    status: int, sop_class: str, sop_instance: str, _: str
):
    request = parse_store_request(encode(_store_command(12, sop_class, sop_instance), True, True))
    assert request is not None
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 12
    response.AffectedSOPClassUID = sop_class
    response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    [primitive] = message.encode_msg(5, 16384)
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)

    assert store_response_pdu(context_id=5, request=request, status=status) == pdu.encode()


def _served_counts(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [
        int(record.getMessage().split(": ")[1].split()[0])
        for record in caplog.records
        if record.name == LANE_LOG and "in the fast lane" in record.getMessage()
    ]


def _dataset_after_meta(content: bytes) -> bytes:
    return content[132 + 12 + int.from_bytes(content[140:144], "little") :]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pdu_options", [[], ["--max-send-pdu", "16384"]], ids=["128KB", "16KB"])
def test_storescu_files_are_kept_as_pynetdicom_keeps_them(
    pdu_options: list[str],
    clinic: Organization,
    dicom_server: DicomServer,
    plain_dicom_server: DicomServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG, logger=LANE_LOG)
    register_node(clinic, "FAST_CT")
    register_node(clinic, "PLAIN_CT")
    # Many small slices, a 512x512 one (several PDUs, even at 128 KB) and a compressed one.
    datasets = [ct_dataset(size=32, instance_number=n, patient_id="P-3") for n in range(1, 13)]
    datasets.append(ct_dataset(size=512, instance_number=13, patient_id="P-3"))
    files = write_files(tmp_path / "out", datasets)
    files.append(Path(get_testdata_file("SC_rgb_rle.dcm", download=False)))

    for server, calling_ae in ((dicom_server, "FAST_CT"), (plain_dicom_server, "PLAIN_CT")):
        result = dcmtk("storescu", "-xr", *pdu_options, "-aet", calling_ae, "-aec", AE_TITLE,
                       "127.0.0.1", server.port, *files)  # fmt: skip
        assert result.returncode == 0, result.stderr
    eventually(lambda: not dicom_server.ae.active_associations)

    for path in files:
        sop_instance_uid = dcmread(path).SOPInstanceUID
        fast = stored_bytes(sop_instance_uid, "FAST_CT")
        assert fast is not None
        assert fast == stored_bytes(sop_instance_uid, "PLAIN_CT")
        assert _dataset_after_meta(fast) == _dataset_after_meta(path.read_bytes())
    # The lane served all of them (the plain server has none: pynetdicom's path kept those).
    assert eventually(lambda: _served_counts(caplog)) == [len(files)]


def _sender(*contexts: str) -> AE:
    ae = AE(ae_title="CT_ATBASHY")
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    return ae


@pytest.mark.django_db(transaction=True)
def test_stores_and_echoes_in_one_association_get_their_own_responses(
    clinic: Organization, dicom_server: DicomServer
):
    register_node(clinic, "CT_ATBASHY")
    slices = [ct_dataset(instance_number=n, patient_id="P-4") for n in range(1, 4)]
    responses: list[C_STORE] = []
    association = _sender(CTImageStorage, Verification).associate(
        "127.0.0.1",
        dicom_server.port,
        ae_title=AE_TITLE,
        evt_handlers=[(evt.EVT_DIMSE_RECV, lambda event: responses.append(event.message))],
    )
    try:
        assert association.is_established
        statuses = [
            association.send_c_echo(msg_id=1).Status,
            association.send_c_store(slices[0], msg_id=11).Status,
            association.send_c_echo(msg_id=2).Status,
            association.send_c_store(slices[1], msg_id=12).Status,
            association.send_c_store(slices[2], msg_id=13).Status,
        ]
        served = server_association(dicom_server).dul.lane.served
    finally:
        association.release()

    assert statuses == [0x0000] * 5
    assert served == 3
    stores = [m.command_set for m in responses if m.command_set.CommandField == 0x8001]
    assert [(c.MessageIDBeingRespondedTo, c.AffectedSOPInstanceUID, c.Status) for c in stores] == [
        (11 + n, ds.SOPInstanceUID, 0x0000) for n, ds in enumerate(slices)
    ]
    assert {c.AffectedSOPClassUID for c in stores} == {CTImageStorage}
    uids = [ds.SOPInstanceUID for ds in slices]
    assert eventually(lambda: Instance.objects.filter(sop_instance_uid__in=uids).count() == 3)


@pytest.mark.django_db(transaction=True)
def test_a_node_without_store_permission_is_refused_in_the_lane_and_audited_once(
    clinic: Organization, dicom_server: DicomServer
):
    node = register_node(clinic, "CT_ATBASHY")
    node.may_store = False
    node.save()
    association = _sender(CTImageStorage).associate(
        "127.0.0.1", dicom_server.port, ae_title=AE_TITLE
    )
    try:
        statuses = [association.send_c_store(ct_dataset()).Status for _ in range(2)]
        served = server_association(dicom_server).dul.lane.served
    finally:
        association.release()

    assert statuses == [0x0124, 0x0124]
    assert served == 2
    eventually(lambda: not dicom_server.ae.active_associations)
    assert not ReceivedFile.objects.exists()
    refusals = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED, channel="dicom")
    assert [event.detail.get("service") for event in refusals] == ["C-STORE"]


def _context_id(association: Association, abstract_syntax: str) -> int:
    [context] = [c for c in association.accepted_contexts if c.abstract_syntax == abstract_syntax]
    return context.context_id


@pytest.mark.django_db(transaction=True)
def test_an_abort_mid_dataset_keeps_what_was_acknowledged_and_no_half_file(
    clinic: Organization, dicom_server: DicomServer, settings: Any, tmp_path: Path
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    register_node(clinic, "CT_ATBASHY")
    acknowledged, cut = ct_dataset(instance_number=1), ct_dataset(instance_number=2, size=256)
    association = _sender(CTImageStorage).associate(
        "127.0.0.1", dicom_server.port, ae_title=AE_TITLE
    )
    assert association.send_c_store(acknowledged).Status == 0x0000
    context_id = _context_id(association, CTImageStorage)
    dataset = encode(cut, False, True)
    command = encode(_store_command(2, CTImageStorage, cut.SOPInstanceUID), True, True)
    lane = server_association(dicom_server).dul.lane

    sock = association.dul.socket.socket
    sock.sendall(p_data_tf((context_id, 0x03, command)))
    sock.sendall(p_data_tf((context_id, 0x00, dataset[: len(dataset) // 2])))
    assert eventually(lambda: lane.fragments)  # the lane holds half of the dataset
    association.abort()
    eventually(lambda: not dicom_server.ae.active_associations)

    assert stored_bytes(acknowledged.SOPInstanceUID) is not None
    assert stored_bytes(cut.SOPInstanceUID) is None
    assert ReceivedFile.objects.count() == 1
    received = tmp_path / "media" / "imaging" / "received"
    assert len([p for p in received.rglob("*") if p.is_file()]) == 1


def _split(kind: str, storage: int, other: int, command: bytes, dataset: bytes) -> list[bytes]:
    half = len(dataset) // 2
    if kind == "whole message in one PDU":
        return [p_data_tf((storage, 0x03, command), (storage, 0x02, dataset))]
    if kind == "command in two fragments":
        return [
            p_data_tf((storage, 0x01, command[:40])),
            p_data_tf((storage, 0x03, command[40:])),
            p_data_tf((storage, 0x02, dataset)),
        ]
    if kind == "dataset continued on another context":
        return [
            p_data_tf((storage, 0x03, command), (storage, 0x00, dataset[:half])),
            p_data_tf((other, 0x02, dataset[half:])),
        ]
    raise AssertionError(kind)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("kind", "served"),
    [
        ("whole message in one PDU", 1),
        ("command in two fragments", 0),
        ("dataset continued on another context", 0),  # started by the lane, given back
        ("command with an element C-STORE has not", 0),
    ],
)
def test_messages_split_as_the_lane_does_not_serve_them_are_stored_by_pynetdicom(
    kind: str, served: int, clinic: Organization, dicom_server: DicomServer
):
    register_node(clinic, "CT_ATBASHY")
    ds = ct_dataset(instance_number=5)
    dataset = encode(ds, False, True)
    association = _sender(CTImageStorage, Verification).associate(
        "127.0.0.1", dicom_server.port, ae_title=AE_TITLE
    )
    try:
        storage = _context_id(association, CTImageStorage)
        other = _context_id(association, Verification)
        if kind == "command with an element C-STORE has not":
            command_set = _store_command(21, CTImageStorage, ds.SOPInstanceUID)
            command_set.MoveDestination = "ELSEWHERE"
            command = _encoded(command_set)
            pdus = [p_data_tf((storage, 0x03, command), (storage, 0x02, dataset))]
        else:
            command = encode(_store_command(21, CTImageStorage, ds.SOPInstanceUID), True, True)
            pdus = _split(kind, storage, other, command, dataset)

        response = send_raw(association, *pdus)
        lane_served = server_association(dicom_server).dul.lane.served
    finally:
        association.release()

    assert isinstance(response, C_STORE)
    assert (response.MessageIDBeingRespondedTo, response.Status) == (21, 0x0000)
    assert response.AffectedSOPInstanceUID == ds.SOPInstanceUID
    assert lane_served == served
    expected = file_meta_header(
        sop_class_uid=CTImageStorage,
        sop_instance_uid=ds.SOPInstanceUID,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    assert eventually(lambda: stored_bytes(ds.SOPInstanceUID)) == expected + dataset
