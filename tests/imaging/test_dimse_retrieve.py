"""C-MOVE (to a dcmtk storescp) and C-GET, driven by dcmtk's movescu and getscu."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from accounts.models import AuditEvent, Organization
from imaging.dimse import DicomServer
from imaging.models import ReceivedFile, Study
from imaging.services.ingest import receive_file
from tests.factories.imaging import ct_series, dicom_bytes, register_node
from tests.imaging.dimse_fixtures import AE_TITLE, StoreSCP, dcmtk, dicom_server, read_dir

__all__ = ["dicom_server"]

pytestmark = pytest.mark.django_db(transaction=True)


def _receive(contents: list[bytes], organization: Organization) -> None:
    for content in contents:
        receive_file(content=content, source=ReceivedFile.Source.UPLOAD, organization=organization)


@pytest.fixture
def study(clinic: Organization, other_clinic: Organization) -> list[Dataset]:
    slices = ct_series(3, patient_id="P-1")
    _receive([dicom_bytes(ds) for ds in slices], clinic)
    _receive([dicom_bytes(ds) for ds in ct_series(2, patient_id="P-9")], other_clinic)
    register_node(clinic, "WORKSTATION")
    return slices


@pytest.fixture
def destination(clinic: Organization, tmp_path: Path) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path / "arrived", "VIEWER_SCP")
    register_node(clinic, "VIEWER_SCP", host="127.0.0.1", port=scp.port)
    try:
        yield scp
    finally:
        scp.stop()


def _keys(keys: tuple[str, ...]) -> list[str]:
    return [argument for key in keys for argument in ("-k", key)]


def _move(
    server: DicomServer, destination_ae: str, *keys: str, calling_ae: str = "WORKSTATION"
) -> object:
    arguments = ["-S", "-v", "-aet", calling_ae, "-aec", AE_TITLE, "-aem", destination_ae]
    return dcmtk("movescu", *arguments, *_keys(keys), "127.0.0.1", server.port)


def _get(server: DicomServer, out: Path, model: str, *keys: str) -> object:
    arguments = [model, "-aet", "WORKSTATION", "-aec", AE_TITLE, "-od", out]
    return dcmtk("getscu", *arguments, *_keys(keys), "127.0.0.1", server.port)


def test_movescu_sends_the_study_to_a_registered_destination(
    study: list[Dataset], destination: StoreSCP, dicom_server: DicomServer
):
    result = _move(
        dicom_server,
        "VIEWER_SCP",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study[0].StudyInstanceUID}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    arrived = read_dir(destination.directory)
    assert {ds.SOPInstanceUID for ds in arrived} == {ds.SOPInstanceUID for ds in study}
    by_uid = {ds.SOPInstanceUID: ds for ds in study}
    assert all(ds.PixelData == by_uid[ds.SOPInstanceUID].PixelData for ds in arrived)
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORT)
    assert event.actor_label == "DICOM WORKSTATION"
    assert event.detail["service"] == "C-MOVE"
    assert event.detail["destination"] == "VIEWER_SCP"
    assert event.detail["instances"] == 3


def test_move_of_a_single_series_and_image(
    study: list[Dataset], destination: StoreSCP, dicom_server: DicomServer
):
    result = _move(
        dicom_server,
        "VIEWER_SCP",
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={study[0].StudyInstanceUID}",
        f"SeriesInstanceUID={study[0].SeriesInstanceUID}",
        f"SOPInstanceUID={study[1].SOPInstanceUID}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert [ds.SOPInstanceUID for ds in read_dir(destination.directory)] == [
        study[1].SOPInstanceUID
    ]


def test_move_of_a_list_of_study_uids_sends_every_study_named(
    study: list[Dataset], clinic: Organization, destination: StoreSCP, dicom_server: DicomServer
):
    second = ct_series(2, patient_id="P-2")
    _receive([dicom_bytes(ds) for ds in second], clinic)
    _receive([dicom_bytes(ds) for ds in ct_series(1, patient_id="P-3")], clinic)

    # A list of UIDs is allowed in a retrieve's unique key (PS3.4 C.4.2.2.1).
    result = _move(
        dicom_server,
        "VIEWER_SCP",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study[0].StudyInstanceUID}\\{second[0].StudyInstanceUID}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert {ds.SOPInstanceUID for ds in read_dir(destination.directory)} == {
        ds.SOPInstanceUID for ds in study + second
    }
    events = AuditEvent.objects.filter(action=AuditEvent.Action.EXPORT)
    assert sorted(event.object_id for event in events) == sorted(
        str(uid_study.pk)
        for uid_study in Study.objects.filter(
            study_instance_uid__in=[study[0].StudyInstanceUID, second[0].StudyInstanceUID]
        )
    )


def test_unknown_move_destination_is_refused(
    study: list[Dataset], destination: StoreSCP, dicom_server: DicomServer
):
    result = _move(
        dicom_server,
        "NOBODY",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study[0].StudyInstanceUID}",
    )

    # 0xA801: move destination unknown.
    assert "MoveDestinationUnknown" in result.stdout + result.stderr
    assert read_dir(destination.directory) == []


def test_other_organizations_study_is_not_moved(
    study: list[Dataset],
    other_clinic: Organization,
    destination: StoreSCP,
    dicom_server: DicomServer,
):
    foreign = ReceivedFile.objects.filter(organization=other_clinic).first().instance
    uid = foreign.series.study.study_instance_uid

    result = _move(
        dicom_server, "VIEWER_SCP", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid}"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert read_dir(destination.directory) == []


def test_move_without_the_unique_key_sends_nothing(
    study: list[Dataset], destination: StoreSCP, dicom_server: DicomServer
):
    result = _move(dicom_server, "VIEWER_SCP", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=")

    assert "DataSetDoesNotMatchSOPClass" in result.stdout + result.stderr
    assert read_dir(destination.directory) == []


def test_compressed_instance_is_decompressed_for_a_destination_that_wants_it_uncompressed(
    clinic: Organization, destination: StoreSCP, dicom_server: DicomServer
):
    # dcmtk's storescp accepts only uncompressed transfer syntaxes unless told otherwise.
    path = get_testdata_file("SC_rgb_rle.dcm", download=False)
    sent = dcmread(path)
    _receive([Path(path).read_bytes()], clinic)
    register_node(clinic, "WORKSTATION")

    result = _move(
        dicom_server,
        "VIEWER_SCP",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={sent.StudyInstanceUID}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    [arrived] = read_dir(destination.directory)
    assert arrived.SOPInstanceUID == sent.SOPInstanceUID
    assert arrived.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    assert (arrived.pixel_array == sent.pixel_array).all()


def test_getscu_retrieves_the_study_over_the_same_association(
    study: list[Dataset], dicom_server: DicomServer, tmp_path: Path
):
    out = tmp_path / "got"
    out.mkdir()

    result = _get(
        dicom_server,
        out,
        "-S",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study[0].StudyInstanceUID}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    got = read_dir(out)
    assert {ds.SOPInstanceUID for ds in got} == {ds.SOPInstanceUID for ds in study}
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORT)
    assert event.detail["service"] == "C-GET"


def test_node_without_query_permission_cannot_retrieve(
    study: list[Dataset], clinic: Organization, destination: StoreSCP, dicom_server: DicomServer
):
    node = register_node(clinic, "MODALITY")
    node.may_query = False
    node.save()

    result = _move(
        dicom_server,
        "VIEWER_SCP",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study[0].StudyInstanceUID}",
        calling_ae="MODALITY",
    )

    assert "0x124" in result.stdout + result.stderr
    assert read_dir(destination.directory) == []


def test_getscu_receives_a_compressed_instance_decompressed_when_it_asks_uncompressed(
    clinic: Organization, dicom_server: DicomServer, tmp_path: Path
):
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm", download=False)
    sent = dcmread(path)
    _receive([Path(path).read_bytes()], clinic)
    register_node(clinic, "WORKSTATION")
    out = tmp_path / "got"
    out.mkdir()

    # getscu proposes the storage SOP classes in uncompressed transfer syntaxes only.
    result = _get(
        dicom_server, out, "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={sent.PatientID}"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    [got] = read_dir(out)
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    assert (got.pixel_array == sent.pixel_array).all()
