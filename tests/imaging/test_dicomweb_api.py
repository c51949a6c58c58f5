"""DICOMweb details through Django's test client: query parameters, transfer syntaxes, frames,
rendering options, STOW-RS failures, and the browser session."""

from __future__ import annotations

import io
import json
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pydicom
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from pydicom.data import get_testdata_file
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from rest_framework.authtoken.models import Token

from accounts.models import Organization, User
from imaging.models import ReceivedFile, Study
from imaging.services.ingest import receive_file
from tests.conftest import logged_in_client
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes, dicomweb_url

pytestmark = pytest.mark.django_db

DICOM = 'multipart/related; type="application/dicom"'


def _token_client(user: User) -> Client:
    token = Token.objects.create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")


def _receive(content: bytes, organization: Organization, capture: Any) -> None:
    with capture(execute=True):
        receive_file(content=content, source=ReceivedFile.Source.UPLOAD, organization=organization)


@pytest.fixture
def series(clinic: Organization, django_capture_on_commit_callbacks: Any) -> list[pydicom.Dataset]:
    datasets = ct_series(3, patient_id="P-1", study_date="20260301")
    for ds in datasets:
        _receive(dicom_bytes(ds), clinic, django_capture_on_commit_callbacks)
    return datasets


@pytest.fixture
def api(clinician: User) -> Client:
    return _token_client(clinician)


def _parts(response: Any) -> list[tuple[str, bytes]]:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    head = f"Content-Type: {response['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + content)
    return [
        (
            f"{part.get_content_type()}; transfer-syntax={part.get_param('transfer-syntax')}",
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def _multipart(*bodies: bytes, boundary: str = "xyz") -> bytes:
    parts = [
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + body + b"\r\n"
        for body in bodies
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


# --- QIDO-RS ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("series")
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("NoSuchAttribute=1", "Unknown attribute"),
        ("limit=-1", "limit"),
        ("StudyDate=yesterday", "StudyDate"),
        ("fuzzymatching=maybe", "fuzzymatching"),
        ("includefield=Nonsense", "Unknown attribute"),
    ],
)
def test_bad_query_parameters_get_400_with_the_reason(
    api: Client, query: str, message: str
) -> None:
    response = api.get(f"/dicomweb/studies?{query}")

    assert response.status_code == 400
    assert message in response.content.decode()


def test_limit_offset_and_the_more_results_warning(
    api: Client, clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    for day in ("20260101", "20260102", "20260103"):
        _receive(
            dicom_bytes(ct_dataset(study_date=day)), clinic, django_capture_on_commit_callbacks
        )

    first = api.get("/dicomweb/studies?limit=2")
    rest = api.get("/dicomweb/studies?limit=2&offset=2")

    assert [s["00080020"]["Value"] for s in first.json()] == [["20260103"], ["20260102"]]
    assert "more results" in first["Warning"]
    assert [s["00080020"]["Value"] for s in rest.json()] == [["20260101"]]
    assert "Warning" not in rest


def test_includefield_adds_attributes_from_the_stored_metadata(
    api: Client, series: list[pydicom.Dataset]
) -> None:
    studies = api.get("/dicomweb/studies?includefield=PixelSpacing&includefield=00180050").json()
    instances = api.get(f"{dicomweb_url(series[0], 'series')}/instances?includefield=all").json()

    assert studies[0]["00280030"]["Value"] == [0.5, 0.5]
    assert studies[0]["00180050"]["Value"] == [1]
    assert instances[0]["00280030"]["Value"] == [0.5, 0.5]
    assert "7FE00010" not in instances[0]  # no bulk data in a search answer


@pytest.mark.usefixtures("series")
def test_matching_on_an_unsupported_attribute_is_ignored_with_a_warning(api: Client) -> None:
    response = api.get("/dicomweb/studies?PatientID=P-1&Manufacturer=ACME")

    assert len(response.json()) == 1
    assert "Manufacturer" in response["Warning"]


def test_empty_search_is_an_empty_array(api: Client) -> None:
    response = api.get("/dicomweb/studies?PatientID=nobody")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    assert response.json() == []


def test_browser_session_may_search_but_not_store_without_csrf(
    clinician: User, series: list[pydicom.Dataset]
) -> None:
    browser = logged_in_client(clinician)
    browser.handler.enforce_csrf_checks = True

    found = browser.get("/dicomweb/studies")
    stored = browser.post(
        "/dicomweb/studies",
        data=_multipart(dicom_bytes(ct_dataset())),
        content_type=f"{DICOM}; boundary=xyz",
    )

    assert found.status_code == 200
    assert len(found.json()) == 1
    assert stored.status_code == 403
    assert not ReceivedFile.objects.filter(source=ReceivedFile.Source.STOW).exists()


# --- WADO-RS ---------------------------------------------------------------------------------


def test_instance_transcoded_to_the_asked_transfer_syntax(
    api: Client, series: list[pydicom.Dataset]
) -> None:
    response = api.get(
        dicomweb_url(series[0]), HTTP_ACCEPT=f"{DICOM}; transfer-syntax={RLELossless}"
    )

    [(content_type, body)] = _parts(response)
    assert content_type == f"application/dicom; transfer-syntax={RLELossless}"
    received = pydicom.dcmread(io.BytesIO(body))
    assert received.file_meta.TransferSyntaxUID == RLELossless
    assert received.pixel_array.tobytes() == series[0].PixelData


def test_compressed_instance_decompressed_on_request(
    api: Client, clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    path = get_testdata_file("JPEG2000.dcm", download=False)
    original = pydicom.dcmread(path)
    _receive(Path(path).read_bytes(), clinic, django_capture_on_commit_callbacks)

    response = api.get(
        dicomweb_url(original), HTTP_ACCEPT=f"{DICOM}; transfer-syntax={ExplicitVRLittleEndian}"
    )

    [(_type, body)] = _parts(response)
    received = pydicom.dcmread(io.BytesIO(body))
    assert received.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (received.pixel_array == original.pixel_array).all()


def test_a_transfer_syntax_we_cannot_make_is_406(
    api: Client, series: list[pydicom.Dataset]
) -> None:
    # JPEG baseline holds 8-bit images only; the CT is 16-bit.
    response = api.get(
        dicomweb_url(series[0]), HTTP_ACCEPT=f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50"
    )

    assert response.status_code == 406


def test_study_streamed_through_asgi_is_byte_identical(
    clinician: User, series: list[pydicom.Dataset]
) -> None:
    token = Token.objects.create(user=clinician)
    client = AsyncClient()
    headers = {"Authorization": f"Bearer {token.key}", "Accept": DICOM}

    async def fetch() -> tuple[str, bytes]:
        response = await client.get(dicomweb_url(series[0], "study"), headers=headers)
        assert response.status_code == 200, response.content
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response["Content-Type"], body

    content_type, body = async_to_sync(fetch)()

    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    parts = BytesParser(policy=HTTP).parsebytes(head + body).iter_parts()
    assert [part.get_payload(decode=True) for part in parts] == [dicom_bytes(ds) for ds in series]


def test_study_metadata_from_the_index(api: Client, series: list[pydicom.Dataset]) -> None:
    metadata = api.get(f"{dicomweb_url(series[0], 'study')}/metadata").json()

    assert [m["00080018"]["Value"] for m in metadata] == [[ds.SOPInstanceUID] for ds in series]
    assert metadata[0]["00020010"]["Value"] == [ExplicitVRLittleEndian]
    assert metadata[0]["7FE00010"]["BulkDataURI"].endswith("/frames/1")


def test_missing_frame_and_malformed_frame_list(api: Client, series: list[pydicom.Dataset]) -> None:
    missing = api.get(f"{dicomweb_url(series[0])}/frames/2")
    malformed = api.get(f"{dicomweb_url(series[0])}/frames/one")

    assert missing.status_code == 404
    assert "Frame 2 does not exist" in missing.content.decode()
    assert malformed.status_code == 400


@pytest.mark.parametrize(
    ("query", "accept", "status"),
    [
        ("window=40,0", "image/jpeg", 400),
        ("window=40,400,sigmoid", "image/jpeg", 400),
        ("viewport=0,10", "image/jpeg", 400),
        ("quality=500", "image/jpeg", 400),
        ("", "image/gif", 406),
        ("window=40,400,linear&viewport=20,20&quality=50", "image/jpeg", 200),
    ],
)
def test_rendering_options_are_checked(
    api: Client, series: list[pydicom.Dataset], query: str, accept: str, status: int
) -> None:
    response = api.get(f"{dicomweb_url(series[0])}/frames/1/rendered?{query}", HTTP_ACCEPT=accept)

    assert response.status_code == status


# --- STOW-RS ---------------------------------------------------------------------------------


def test_a_part_that_is_not_dicom_is_kept_and_reported_failed(
    api: Client, clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/dicomweb/studies",
            data=_multipart(b"this is not DICOM"),
            content_type=f"{DICOM}; boundary=xyz",
        )

    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [0xC000]
    kept = ReceivedFile.objects.get()
    assert kept.status == ReceivedFile.Status.FAILED
    with kept.file.open("rb") as stored:
        assert stored.read() == b"this is not DICOM"


def test_a_part_of_another_study_is_refused_the_rest_stored(
    api: Client, django_capture_on_commit_callbacks: Any
) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    ours, theirs = ct_dataset(study_uid=study_uid), ct_dataset()

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/dicomweb/studies/{study_uid}",
            data=_multipart(dicom_bytes(ours), dicom_bytes(theirs)),
            content_type=f"{DICOM}; boundary=xyz",
        )

    assert response.status_code == 202
    answer = response.json()
    [stored] = answer["00081199"]["Value"]
    [failed] = answer["00081198"]["Value"]
    assert stored["00081155"]["Value"] == [ours.SOPInstanceUID]
    assert failed["00081155"]["Value"] == [theirs.SOPInstanceUID]
    assert list(Study.objects.values_list("study_instance_uid", flat=True)) == [study_uid]


def test_only_clinicians_store(specialist: User) -> None:
    response = _token_client(specialist).post(
        "/dicomweb/studies",
        data=_multipart(dicom_bytes(ct_dataset())),
        content_type=f"{DICOM}; boundary=xyz",
    )

    assert response.status_code == 403
    assert not ReceivedFile.objects.exists()


@pytest.mark.parametrize(
    "content_type",
    ["application/dicom", 'multipart/related; type="application/dicom+json"; boundary=xyz'],
)
def test_stow_needs_multipart_dicom(api: Client, content_type: str) -> None:
    response = api.post("/dicomweb/studies", data=b"{}", content_type=content_type)

    assert response.status_code == 415
    assert not ReceivedFile.objects.exists()


def test_stow_body_without_parts_is_400(api: Client) -> None:
    response = api.post(
        "/dicomweb/studies", data=b"--xyz--\r\n", content_type=f"{DICOM}; boundary=xyz"
    )

    assert response.status_code == 400
    assert json.dumps(response.content.decode())


def _receive_testdata(name: str, clinic: Organization, capture: Any) -> pydicom.Dataset:
    path = get_testdata_file(name, download=False)
    _receive(Path(path).read_bytes(), clinic, capture)
    return pydicom.dcmread(path)


def test_frames_of_a_multiframe_rle_instance_as_stored_and_decoded(
    api: Client, clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    original = _receive_testdata(
        "SC_rgb_rle_2frame.dcm", clinic, django_capture_on_commit_callbacks
    )

    as_stored = api.get(
        f"{dicomweb_url(original)}/frames/2", HTTP_ACCEPT="multipart/related; type=*/*"
    )
    decoded = api.get(
        f"{dicomweb_url(original)}/frames/2,1",
        HTTP_ACCEPT='multipart/related; type="application/octet-stream"; transfer-syntax=*',
    )

    [(content_type, frame)] = _parts(as_stored)
    assert content_type == f"image/dicom-rle; transfer-syntax={RLELossless}"
    assert frame == get_frame(original.PixelData, 1, number_of_frames=2)
    pixels = original.pixel_array  # frames × rows × columns × RGB, as pydicom decodes
    assert [body for _type, body in _parts(decoded)] == [pixels[1].tobytes(), pixels[0].tobytes()]


def test_frames_of_a_big_endian_file_come_little_endian(
    api: Client, clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    original = _receive_testdata(
        "MR_small_bigendian.dcm", clinic, django_capture_on_commit_callbacks
    )

    response = api.get(
        f"{dicomweb_url(original)}/frames/1", HTTP_ACCEPT="multipart/related; type=*/*"
    )

    [(content_type, frame)] = _parts(response)
    assert content_type == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    assert (
        frame == original.pixel_array.astype(original.pixel_array.dtype.newbyteorder("<")).tobytes()
    )
