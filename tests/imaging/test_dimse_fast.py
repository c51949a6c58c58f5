"""The quick C-STORE path of our DIMSE server: large PDUs, the event-driven reactors
(imaging/dimse_reactor.py, written against pynetdicom 3.0.4), the file meta and the C-STORE
response encoded without pydicom — each must give what pynetdicom's own path gives."""

from __future__ import annotations

from pathlib import Path

import pynetdicom
import pytest
from pydicom import dcmread
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode, encode_file_meta

from accounts.models import Organization
from imaging.dimse import MAXIMUM_PDU_SIZE, DicomServer, file_meta_header
from imaging.dimse_reactor import PYNETDICOM_VERSION, store_response_command
from imaging.models import Instance
from tests.factories.imaging import ct_dataset, register_node
from tests.imaging.dimse_fixtures import AE_TITLE, dcmtk, dicom_server, eventually, write_files

__all__ = ["dicom_server"]

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
