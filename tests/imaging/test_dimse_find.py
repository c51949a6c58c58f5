"""C-FIND at patient, study, series and image level, driven by dcmtk's findscu."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from accounts.models import AuditEvent, Organization
from ehr.models import Patient
from imaging.dimse import DicomServer
from imaging.models import ReceivedFile
from imaging.services.ingest import receive_file
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes, register_node
from tests.imaging.dimse_fixtures import AE_TITLE, dcmtk, dicom_server, read_dir

__all__ = ["dicom_server"]

pytestmark = pytest.mark.django_db(transaction=True)


def _receive(datasets: list[Dataset], organization: Organization) -> None:
    # Outside a transaction the ingest (eager Celery) runs at once.
    for ds in datasets:
        receive_file(
            content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=organization
        )


@pytest.fixture
def archive(clinic: Organization, other_clinic: Organization, patient: Patient) -> dict:
    """Two studies received by the clinic, one by the other clinic, and one received by the
    other clinic of a patient of the clinic (so the clinic may see it too)."""
    head = ct_series(3, patient_id="P-1", patient_name="Mamytova^Asel", study_date="20260110")
    chest = ct_series(
        2,
        patient_id="P-2",
        patient_name="Sadykov^Bekzat",
        study_date="20260520",
        modality="MR",
        study_description="MR knee",
    )
    foreign = ct_series(1, patient_id="P-9", patient_name="Other^Person", study_date="20260301")
    ours_elsewhere = ct_series(1, patient_id=patient.pin, study_date="20260601")
    _receive(head + chest, clinic)
    _receive(foreign + ours_elsewhere, other_clinic)
    register_node(clinic, "CT_ATBASHY")
    return {"head": head, "chest": chest, "foreign": foreign, "ours_elsewhere": ours_elsewhere}


def _find(
    server: DicomServer, out: Path, model: str, level: str, *keys: str, calling_ae: str = ""
) -> list[Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    arguments = [model, "-aet", calling_ae or "CT_ATBASHY", "-aec", AE_TITLE, "-X", "-od", out]
    arguments += ["-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        arguments += ["-k", key]
    result = dcmtk("findscu", *arguments, "127.0.0.1", server.port)
    assert result.returncode == 0, result.stdout + result.stderr
    return read_dir(out)


def test_study_level_returns_own_studies_with_requested_keys(
    archive: dict, dicom_server: DicomServer, tmp_path: Path
):
    answers = _find(
        dicom_server,
        tmp_path,
        "-S",
        "STUDY",
        "StudyInstanceUID",
        "PatientName",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "StudyDescription",
    )

    by_uid = {answer.StudyInstanceUID: answer for answer in answers}
    expected = {archive[name][0].StudyInstanceUID for name in ("head", "chest", "ours_elsewhere")}
    assert set(by_uid) == expected  # never the other clinic's own study
    chest = by_uid[archive["chest"][0].StudyInstanceUID]
    assert str(chest.PatientName) == "Sadykov^Bekzat"
    assert chest.StudyDate == "20260520"
    assert chest.ModalitiesInStudy == "MR"
    assert int(chest.NumberOfStudyRelatedInstances) == 2
    assert chest.StudyDescription == "MR knee"
    assert chest.QueryRetrieveLevel == "STUDY"


def test_study_level_matching_keys_filter(archive: dict, dicom_server: DicomServer, tmp_path):
    answers = _find(
        dicom_server, tmp_path, "-S", "STUDY", "StudyInstanceUID", "StudyDate=20260501-"
    )

    assert {answer.StudyInstanceUID for answer in answers} == {
        archive["chest"][0].StudyInstanceUID,
        archive["ours_elsewhere"][0].StudyInstanceUID,
    }


def test_other_organizations_study_is_not_found_even_by_its_uid(
    archive: dict, dicom_server: DicomServer, tmp_path: Path
):
    uid = archive["foreign"][0].StudyInstanceUID

    answers = _find(dicom_server, tmp_path, "-S", "STUDY", f"StudyInstanceUID={uid}")

    assert answers == []


def test_series_level(archive: dict, dicom_server: DicomServer, tmp_path: Path):
    study_uid = archive["chest"][0].StudyInstanceUID

    answers = _find(
        dicom_server,
        tmp_path,
        "-S",
        "SERIES",
        f"StudyInstanceUID={study_uid}",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfSeriesRelatedInstances",
    )

    assert len(answers) == 1
    assert answers[0].SeriesInstanceUID == archive["chest"][0].SeriesInstanceUID
    assert answers[0].Modality == "MR"
    assert int(answers[0].NumberOfSeriesRelatedInstances) == 2
    assert answers[0].QueryRetrieveLevel == "SERIES"


def test_image_level(archive: dict, dicom_server: DicomServer, tmp_path: Path):
    series_uid = archive["head"][0].SeriesInstanceUID

    answers = _find(
        dicom_server,
        tmp_path,
        "-S",
        "IMAGE",
        f"SeriesInstanceUID={series_uid}",
        "SOPInstanceUID",
        "InstanceNumber",
        "SliceThickness",
    )

    assert sorted(int(answer.InstanceNumber) for answer in answers) == [1, 2, 3]
    assert {answer.SOPInstanceUID for answer in answers} == {
        ds.SOPInstanceUID for ds in archive["head"]
    }
    # An attribute the index has no column for comes from the instance's metadata.
    assert {float(answer.SliceThickness) for answer in answers} == {1.0}


def test_patient_level_patient_root(archive: dict, dicom_server: DicomServer, tmp_path: Path):
    answers = _find(
        dicom_server,
        tmp_path,
        "-P",
        "PATIENT",
        "PatientID",
        "PatientName=Sad*",
        "NumberOfPatientRelatedStudies",
    )

    assert [answer.PatientID for answer in answers] == ["P-2"]
    assert str(answers[0].PatientName) == "Sadykov^Bekzat"
    assert int(answers[0].NumberOfPatientRelatedStudies) == 1


def test_patient_level_is_refused_in_study_root(
    archive: dict, dicom_server: DicomServer, tmp_path: Path
):
    result = dcmtk(
        "findscu",
        "-S",
        "-v",
        "-aet",
        "CT_ATBASHY",
        "-aec",
        AE_TITLE,
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID",
        "127.0.0.1",
        dicom_server.port,
    )

    # 0xA900: identifier does not match SOP class (Study Root has no PATIENT level).
    assert "DataSetDoesNotMatchSOPClass" in result.stdout + result.stderr


def test_every_answer_is_audited_as_the_node(
    archive: dict, dicom_server: DicomServer, tmp_path: Path
):
    uid = archive["head"][0].StudyInstanceUID

    _find(dicom_server, tmp_path, "-S", "STUDY", f"StudyInstanceUID={uid}")

    event = AuditEvent.objects.get(action=AuditEvent.Action.LIST)
    assert event.actor_label == "DICOM CT_ATBASHY"
    assert event.object_type == "imaging.study"
    assert event.detail["service"] == "C-FIND"
    assert event.channel == "dicom"


def test_node_without_query_permission_is_refused(
    archive: dict, clinic: Organization, dicom_server: DicomServer
):
    node = register_node(clinic, "MODALITY")
    node.may_query = False
    node.save()

    result = dcmtk(
        "findscu",
        "-S",
        "-v",
        "-aet",
        "MODALITY",
        "-aec",
        AE_TITLE,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "StudyInstanceUID",
        "127.0.0.1",
        dicom_server.port,
    )

    # 0x0124 "Refused: Not Authorized" (PS3.7 C.5.21): dcmtk prints it as 0x124.
    assert "0x124" in result.stdout + result.stderr
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.LIST).exists()


def test_cyrillic_names_come_back_intact(
    clinic: Organization, dicom_server: DicomServer, tmp_path: Path
):
    ds = ct_dataset(patient_id="KG-1", patient_name="Мамытова^Асель")
    ds.SpecificCharacterSet = "ISO_IR 192"
    _receive([ds], clinic)
    register_node(clinic, "CT_ATBASHY")

    answers = _find(dicom_server, tmp_path, "-S", "STUDY", "PatientName", "PatientID=KG-1")

    assert str(answers[0].PatientName) == "Мамытова^Асель"
