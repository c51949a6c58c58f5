"""DICOMweb as a PACS client sees it: the real dicomweb-client against a live server, with an
API token, over 127.0.0.1."""

from __future__ import annotations

import io
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.conf import settings
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import get_frame
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent, Organization, User
from imaging.models import ReceivedFile, Study
from imaging.services.ingest import receive_file
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server: Any, user: User) -> DICOMwebClient:
    token = Token.objects.create(user=user)
    return DICOMwebClient(
        url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Bearer {token.key}"}
    )


def _receive(content: bytes, organization: Organization) -> ReceivedFile:
    # Outside a transaction the ingest runs at once (tasks are eager in tests).
    return receive_file(
        content=content, source=ReceivedFile.Source.UPLOAD, organization=organization
    )


@pytest.fixture
def stored(clinic: Organization) -> dict[str, Any]:
    """Two studies of the clinic: a 3-slice CT and a one-slice MR, as received."""
    ct = ct_series(3, patient_id="P-CT", study_date="20260115", accession_number="ACC-CT")
    mr = [
        ct_dataset(
            patient_id="P-MR", study_date="20260610", accession_number="ACC-MR", modality="MR"
        )
    ]
    files = {}
    for ds in ct + mr:
        files[ds.SOPInstanceUID] = dicom_bytes(ds)
        _receive(files[ds.SOPInstanceUID], clinic)
    return {"ct": ct, "mr": mr, "files": files}


def _values(result: dict[str, Any], tag: str) -> list[Any]:
    return result.get(tag, {}).get("Value", [])


def _multipart_bodies(response: requests.Response) -> list[bytes]:
    # Parsed with the standard library's MIME parser, not ours.
    head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def test_search_for_studies_by_patient_date_modality_and_accession(
    live_server: Any, clinician: User, stored: dict[str, Any]
) -> None:
    client = _client(live_server, clinician)

    by_patient = client.search_for_studies(search_filters={"PatientID": "P-CT"})
    by_date = client.search_for_studies(search_filters={"StudyDate": "20260501-20261231"})
    by_modality = client.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
    by_accession = client.search_for_studies(search_filters={"00080050": "ACC-MR"})

    assert [_values(r, "00100020") for r in by_patient] == [["P-CT"]]
    assert [_values(r, "00100020") for r in by_date] == [["P-MR"]]
    assert [_values(r, "00100020") for r in by_modality] == [["P-CT"]]
    assert [_values(r, "00100020") for r in by_accession] == [["P-MR"]]
    study = by_patient[0]
    assert _values(study, "0020000D") == [stored["ct"][0].StudyInstanceUID]
    assert _values(study, "00201206") == [1]  # NumberOfStudyRelatedSeries
    assert _values(study, "00201208") == [3]  # NumberOfStudyRelatedInstances
    assert _values(study, "00080061") == ["CT"]
    # dicomweb-client sends "Host" without the port, so only the path can be compared here.
    retrieve_url = urlparse(_values(study, "00081190")[0])
    assert retrieve_url.path == f"/dicomweb/studies/{stored['ct'][0].StudyInstanceUID}"


def test_search_for_series_and_instances(
    live_server: Any, clinician: User, stored: dict[str, Any]
) -> None:
    client = _client(live_server, clinician)
    ct = stored["ct"]

    all_series = client.search_for_series(search_filters={"Modality": "MR"})
    study_series = client.search_for_series(study_instance_uid=ct[0].StudyInstanceUID)
    instances = client.search_for_instances(
        study_instance_uid=ct[0].StudyInstanceUID,
        series_instance_uid=ct[0].SeriesInstanceUID,
    )
    one = client.search_for_instances(search_filters={"SOPInstanceUID": ct[1].SOPInstanceUID})

    assert [_values(s, "0020000E") for s in all_series] == [[stored["mr"][0].SeriesInstanceUID]]
    assert _values(all_series[0], "00100020") == ["P-MR"]  # study attributes come along
    assert [_values(s, "00201209") for s in study_series] == [[3]]
    assert [_values(i, "00200013") for i in instances] == [[1], [2], [3]]
    assert [_values(i, "00080018") for i in one] == [[ct[1].SOPInstanceUID]]


def test_retrieved_files_are_the_bytes_that_were_stored(
    live_server: Any, clinician: User, stored: dict[str, Any]
) -> None:
    client = _client(live_server, clinician)
    ct = stored["ct"]
    url = (
        f"{live_server.url}/dicomweb/studies/{ct[0].StudyInstanceUID}"
        f"/series/{ct[0].SeriesInstanceUID}"
    )

    study = client.retrieve_study(ct[0].StudyInstanceUID)
    series = client.retrieve_series(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID)
    instance = client.retrieve_instance(
        ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID, ct[2].SOPInstanceUID
    )
    raw = requests.get(
        url,
        headers={
            **client._session.headers,
            "Accept": 'multipart/related; type="application/dicom"',
        },
        timeout=30,
    )

    assert sorted(ds.SOPInstanceUID for ds in study) == sorted(ds.SOPInstanceUID for ds in ct)
    assert [ds.InstanceNumber for ds in series] == [1, 2, 3]
    assert instance.SOPInstanceUID == ct[2].SOPInstanceUID
    assert instance.PixelData == ct[2].PixelData
    assert _multipart_bodies(raw) == [stored["files"][ds.SOPInstanceUID] for ds in ct]


def test_series_metadata_points_pixel_data_at_the_frames(
    live_server: Any, clinician: User, stored: dict[str, Any]
) -> None:
    client = _client(live_server, clinician)
    ct = stored["ct"]

    metadata = client.retrieve_series_metadata(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID)

    assert [_values(m, "00080018") for m in metadata] == [[ds.SOPInstanceUID] for ds in ct]
    assert _values(metadata[0], "00100020") == ["P-CT"]
    assert _values(metadata[0], "00280010") == [64]
    pixel_uri = metadata[0]["7FE00010"]["BulkDataURI"]
    assert pixel_uri.endswith(f"/instances/{ct[0].SOPInstanceUID}/frames/1")
    frames = requests.get(
        live_server.url + urlparse(pixel_uri).path,
        headers={**client._session.headers, "Accept": "multipart/related; type=*/*"},
        timeout=30,
    )
    assert _multipart_bodies(frames) == [ct[0].PixelData]


def test_frames_native_and_compressed(
    live_server: Any, clinician: User, clinic: Organization, stored: dict[str, Any]
) -> None:
    client = _client(live_server, clinician)
    ct = stored["ct"][0]
    jpeg2000_path = get_testdata_file("JPEG2000.dcm", download=False)
    jpeg2000 = pydicom.dcmread(jpeg2000_path)
    _receive(Path(jpeg2000_path).read_bytes(), clinic)
    j2k_uids = (jpeg2000.StudyInstanceUID, jpeg2000.SeriesInstanceUID, jpeg2000.SOPInstanceUID)

    native = client.retrieve_instance_frames(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID, frame_numbers=[1]
    )
    as_stored = client.retrieve_instance_frames(*j2k_uids, frame_numbers=[1])
    decoded = client.retrieve_instance_frames(
        *j2k_uids,
        frame_numbers=[1],
        media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
    )

    assert native == [ct.PixelData]
    assert as_stored == [get_frame(jpeg2000.PixelData, 0, number_of_frames=1)]
    assert decoded == [jpeg2000.pixel_array.astype(jpeg2000.pixel_array.dtype).tobytes()]


def test_rendered_instance_is_a_jpeg_of_the_right_size(
    live_server: Any, clinician: User, stored: dict[str, Any]
) -> None:
    client = _client(live_server, clinician)
    ct = stored["ct"][0]
    uids = (ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)

    full = client.retrieve_instance_rendered(*uids, media_types=("image/jpeg",))
    small = client.retrieve_instance_rendered(
        *uids, media_types=("image/png",), params={"viewport": "32,32", "window": "40,400"}
    )

    with Image.open(io.BytesIO(full)) as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "PNG"
        assert max(image.size) == 32


def test_stored_instances_are_found_and_reported(
    live_server: Any, clinician: User, clinic: Organization
) -> None:
    client = _client(live_server, clinician)
    datasets = ct_series(2, patient_id="STOW-1")
    for ds in datasets:
        # dicomweb-client writes the datasets itself: they need their meta header fields.
        ds.preamble = b"\0" * 128

    result = client.store_instances(datasets)

    referenced = result.ReferencedSOPSequence
    assert sorted(item.ReferencedSOPInstanceUID for item in referenced) == sorted(
        ds.SOPInstanceUID for ds in datasets
    )
    assert "FailedSOPSequence" not in result
    found = client.search_for_studies(search_filters={"PatientID": "STOW-1"})
    assert _values(found[0], "00201208") == [2]
    received = ReceivedFile.objects.filter(source=ReceivedFile.Source.STOW)
    assert {(r.organization_id, r.received_by_id) for r in received} == {(clinic.pk, clinician.pk)}


def test_another_clinic_sees_nothing_and_the_refusal_is_audited(
    live_server: Any, other_clinician: User, stored: dict[str, Any]
) -> None:
    client = _client(live_server, other_clinician)
    ct = stored["ct"][0]

    found = client.search_for_studies()
    with pytest.raises(requests.HTTPError) as refused:
        client.retrieve_study(ct.StudyInstanceUID)
    with pytest.raises(requests.HTTPError) as missing:
        client.retrieve_study("1.2.3.4.5.6.7")

    assert found == []
    assert refused.value.response.status_code == 404
    assert refused.value.response.content == missing.value.response.content
    study = Study.objects.get(study_instance_uid=ct.StudyInstanceUID)
    assert AuditEvent.objects.filter(
        actor_user_id=other_clinician.pk,
        object_id=str(study.pk),
        outcome=AuditEvent.Outcome.DENIED,
    ).exists()


def test_without_a_token_the_answer_is_401(live_server: Any, stored: dict[str, Any]) -> None:
    response = requests.get(f"{live_server.url}/dicomweb/studies", timeout=30)
    bad_token = requests.get(
        f"{live_server.url}/dicomweb/studies",
        headers={"Authorization": "Bearer not-a-token"},
        timeout=30,
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert bad_token.status_code == 401


def test_a_malformed_stow_body_is_refused_and_nothing_is_kept(
    live_server: Any, clinician: User
) -> None:
    client = _client(live_server, clinician)
    content = dicom_bytes(ct_dataset())
    boundary = "b0undary"
    truncated = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + content[: len(content) // 2]  # the connection dropped: no closing boundary
    )

    response = requests.post(
        f"{live_server.url}/dicomweb/studies",
        data=truncated,
        headers={
            **client._session.headers,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
        timeout=30,
    )

    assert response.status_code == 400
    assert "multipart" in response.text
    assert not ReceivedFile.objects.exists()
    assert not Study.objects.exists()
    received_dir = Path(settings.MEDIA_ROOT) / "imaging" / "received"
    assert not received_dir.exists() or not any(received_dir.rglob("*"))


def test_reads_are_audited(live_server: Any, clinician: User, stored: dict[str, Any]) -> None:
    client = _client(live_server, clinician)
    ct = stored["ct"][0]
    study = Study.objects.get(study_instance_uid=ct.StudyInstanceUID)
    before = AuditEvent.objects.count()

    client.search_for_studies(search_filters={"PatientID": "P-CT"})
    client.retrieve_series_metadata(ct.StudyInstanceUID, ct.SeriesInstanceUID)
    client.retrieve_instance(ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)

    events = AuditEvent.objects.order_by("id")[before:]
    assert [(e.action, e.object_id, e.channel, e.actor_user_id) for e in events] == [
        ("list", str(study.pk), "api", clinician.pk),
        ("view", str(study.pk), "api", clinician.pk),
        ("view", str(study.pk), "api", clinician.pk),
    ]
    assert events[1].detail["dicomweb"] == "series metadata"
