"""Query matching (PS3.4 C.2.2.2) over the index, as QIDO-RS and C-FIND use it."""

from __future__ import annotations

import pytest

from accounts.models import Organization
from imaging.models import Instance, ReceivedFile, Series, Study
from imaging.services.ingest import receive_file
from imaging.services.query import QueryError, match_instances, match_series, match_studies
from tests.factories.imaging import ct_dataset, dicom_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed(clinic: Organization, django_capture_on_commit_callbacks: object) -> None:
    datasets = [
        ct_dataset(
            patient_id="P-1",
            patient_name="Mamytova^Asel",
            study_date="20260110",
            accession_number="A1",
        ),
        ct_dataset(
            patient_id="P-2",
            patient_name="Sadykov^Bekzat",
            study_date="20260520",
            accession_number="A2",
            modality="MR",
            series_description="T1 sag",
        ),
        ct_dataset(
            patient_id="P-22",
            patient_name="Sadykova^Aida",
            study_date="20261201",
            accession_number="A3",
            modality="US",
        ),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        for ds in datasets:
            receive_file(
                content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
            )


def _patients(filters: dict[str, str]) -> list[str]:
    studies = match_studies(Study.objects.all(), filters)
    return sorted(studies.values_list("dicom_patient_id", flat=True))


@pytest.mark.usefixtures("indexed")
def test_empty_and_star_are_universal_matches() -> None:
    assert _patients({"PatientID": "", "PatientName": "*"}) == ["P-1", "P-2", "P-22"]


@pytest.mark.usefixtures("indexed")
def test_single_value_matches_exactly() -> None:
    assert _patients({"PatientID": "P-2"}) == ["P-2"]
    assert _patients({"AccessionNumber": "A3"}) == ["P-22"]


@pytest.mark.usefixtures("indexed")
def test_patient_name_wildcards_ignore_case() -> None:
    assert _patients({"PatientName": "sadykov*"}) == ["P-2", "P-22"]
    assert _patients({"PatientName": "SADYKOV?^*"}) == ["P-22"]
    assert _patients({"PatientName": "*asel"}) == ["P-1"]


@pytest.mark.usefixtures("indexed")
def test_date_ranges_open_and_closed() -> None:
    assert _patients({"StudyDate": "20260101-20260601"}) == ["P-1", "P-2"]
    assert _patients({"StudyDate": "-20260110"}) == ["P-1"]
    assert _patients({"StudyDate": "20260520-"}) == ["P-2", "P-22"]
    assert _patients({"StudyDate": "20261201"}) == ["P-22"]


@pytest.mark.usefixtures("indexed")
def test_modalities_in_study_matches_any_listed() -> None:
    assert _patients({"ModalitiesInStudy": "MR"}) == ["P-2"]
    assert _patients({"ModalitiesInStudy": "CT\\US"}) == ["P-1", "P-22"]


@pytest.mark.usefixtures("indexed")
def test_uid_list_matches_each_uid() -> None:
    uids = list(
        Study.objects.order_by("dicom_patient_id").values_list("study_instance_uid", flat=True)
    )

    assert _patients({"StudyInstanceUID": "\\".join(uids[:2])}) == ["P-1", "P-2"]


@pytest.mark.usefixtures("indexed")
def test_unknown_keys_are_ignored() -> None:
    assert _patients({"ScheduledStationAETitle": "X", "PatientID": "P-1"}) == ["P-1"]


@pytest.mark.usefixtures("indexed")
def test_series_and_instance_keys_and_parent_keys() -> None:
    series = match_series(Series.objects.all(), {"Modality": "MR", "PatientID": "P-2"})
    assert list(series.values_list("description", flat=True)) == ["T1 sag"]
    assert match_series(Series.objects.all(), {"SeriesDescription": "t1*"}).count() == 0

    instance = Instance.objects.filter(series__modality="US").get()
    found = match_instances(
        Instance.objects.all(),
        {
            "SOPInstanceUID": instance.sop_instance_uid,
            "InstanceNumber": "1",
            "StudyDate": "20260101-",
        },
    )
    assert list(found) == [instance]


@pytest.mark.usefixtures("indexed")
def test_malformed_values_raise_a_clear_error() -> None:
    with pytest.raises(QueryError, match="StudyDate"):
        match_studies(Study.objects.all(), {"StudyDate": "last week"})
    with pytest.raises(QueryError, match="InstanceNumber"):
        match_instances(Instance.objects.all(), {"InstanceNumber": "one"})
