"""Association acceptance, C-ECHO and C-STORE, driven by dcmtk's echoscu and storescu."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from accounts.models import AuditEvent, Organization
from imaging.dimse import DicomServer
from imaging.models import Instance, ReceivedFile, Study
from tests.factories.imaging import ct_series, register_node
from tests.imaging.dimse_fixtures import AE_TITLE, dcmtk, dicom_server, eventually, write_files

__all__ = ["dicom_server"]

pytestmark = pytest.mark.django_db(transaction=True)

# pydicom's bundled files, each with the storescu option that proposes its transfer syntax.
COMPRESSED_FILES = [
    ("JPEG2000.dcm", "-xw"),
    ("SC_rgb_rle.dcm", "-xr"),
    ("MR_small_jpeg_ls_lossless.dcm", "-xt"),
    ("SC_rgb_jpeg_dcmtk.dcm", "-xy"),
]


def _echo(server: DicomServer, calling_ae: str) -> object:
    return dcmtk("echoscu", "-aet", calling_ae, "-aec", AE_TITLE, "127.0.0.1", server.port)


def test_registered_modality_is_answered_by_echo(clinic: Organization, dicom_server: DicomServer):
    register_node(clinic, "CT_ATBASHY")

    result = _echo(dicom_server, "CT_ATBASHY")

    assert result.returncode == 0, result.stderr


def test_storescu_series_is_kept_as_sent_and_indexed(
    clinic: Organization, dicom_server: DicomServer, tmp_path: Path
):
    register_node(clinic, "CT_ATBASHY")
    slices = ct_series(3, patient_id="P-77", accession_number="ACC77")
    files = write_files(tmp_path / "out", slices)

    result = dcmtk(
        "storescu", "-aet", "CT_ATBASHY", "-aec", AE_TITLE, "127.0.0.1", dicom_server.port, *files
    )

    assert result.returncode == 0, result.stderr
    study = Study.objects.get()
    assert study.study_instance_uid == slices[0].StudyInstanceUID
    assert study.organization == clinic
    assert (study.number_of_series, study.number_of_instances) == (1, 3)
    assert study.accession_number == "ACC77"
    received = list(ReceivedFile.objects.order_by("pk"))
    assert {r.source for r in received} == {ReceivedFile.Source.STORE}
    assert {r.calling_ae for r in received} == {"CT_ATBASHY"}
    assert {r.status for r in received} == {ReceivedFile.Status.INGESTED}
    # The dataset arrived exactly as the sender encoded it: same elements, same pixel bytes.
    for path in files:
        sent = dcmread(path)
        instance = Instance.objects.get(sop_instance_uid=sent.SOPInstanceUID)
        with instance.received_file.file.open("rb") as stored_file:
            content = stored_file.read()
        assert hashlib.sha256(content).hexdigest() == instance.received_file.sha256
        stored = dcmread(instance.received_file.file.path)
        assert stored.PixelData == sent.PixelData
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID


@pytest.mark.parametrize(("name", "propose"), COMPRESSED_FILES)
def test_compressed_files_are_accepted_in_their_own_transfer_syntax(
    name: str, propose: str, clinic: Organization, dicom_server: DicomServer
):
    register_node(clinic, "US_ATBASHY")
    path = get_testdata_file(name, download=False)
    sent = dcmread(path)

    result = dcmtk(
        "storescu",
        propose,
        "-aet",
        "US_ATBASHY",
        "-aec",
        AE_TITLE,
        "127.0.0.1",
        dicom_server.port,
        path,
    )

    assert result.returncode == 0, result.stderr
    instance = Instance.objects.get(sop_instance_uid=sent.SOPInstanceUID)
    assert instance.transfer_syntax_uid == sent.file_meta.TransferSyntaxUID
    stored = dcmread(instance.received_file.file.path)
    assert stored.PixelData == sent.PixelData  # the compressed bitstream, untouched


def test_unknown_ae_title_is_refused_and_audited(clinic: Organization, dicom_server: DicomServer):
    register_node(clinic, "CT_ATBASHY")

    result = _echo(dicom_server, "INTRUDER")

    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr
    event = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN_FAILED)
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert event.actor_label == "DICOM INTRUDER"
    assert event.detail["address"] == "127.0.0.1"
    assert event.channel == "dicom"


def test_node_from_another_address_is_refused_and_nothing_stored(
    clinic: Organization, dicom_server: DicomServer, tmp_path: Path
):
    register_node(clinic, "CT_ATBASHY", host="10.20.30.40")
    files = write_files(tmp_path / "out", ct_series(1))

    result = dcmtk(
        "storescu", "-aet", "CT_ATBASHY", "-aec", AE_TITLE, "127.0.0.1", dicom_server.port, *files
    )

    assert result.returncode != 0
    assert not ReceivedFile.objects.exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN_FAILED)
    assert event.detail["reason"] == "address not allowed"


def test_inactive_node_is_refused(clinic: Organization, dicom_server: DicomServer):
    node = register_node(clinic, "CT_OLD")
    node.is_active = False
    node.save()

    result = _echo(dicom_server, "CT_OLD")

    assert result.returncode != 0


def test_node_without_store_permission_gets_a_failure_status_and_nothing_is_kept(
    clinic: Organization, dicom_server: DicomServer, tmp_path: Path
):
    node = register_node(clinic, "VIEWER")
    node.may_store = False
    node.save()
    files = write_files(tmp_path / "out", ct_series(1))

    result = dcmtk(
        "storescu", "-v", "-aet", "VIEWER", "-aec", AE_TITLE, "127.0.0.1", dicom_server.port, *files
    )

    # 0x0124 "Refused: Not Authorized" (PS3.7 C.5.21): dcmtk prints it as 0x124.
    assert "Status: 0x124" in result.stdout + result.stderr
    assert not ReceivedFile.objects.exists()


def test_files_received_before_an_abort_are_kept_and_indexed(
    clinic: Organization, dicom_server: DicomServer
):
    register_node(clinic, "CT_ATBASHY")
    slices = ct_series(2)
    sender = AE(ae_title="CT_ATBASHY")
    sender.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    association = sender.associate("127.0.0.1", dicom_server.port, ae_title=AE_TITLE)
    assert association.is_established

    statuses = [association.send_c_store(ds).Status for ds in slices]
    association.abort()
    # The server queues the ingest of what it kept when it sees the abort, in its own thread:
    # wait for that thread to end before reading (SQLite in memory: no concurrent reads).
    eventually(lambda: not dicom_server.ae.active_associations)

    assert statuses == [0x0000, 0x0000]
    assert set(ReceivedFile.objects.values_list("status", flat=True)) == {"ingested"}
    assert Instance.objects.count() == 2
