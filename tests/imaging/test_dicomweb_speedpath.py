"""DICOMweb reads as the web process serves them (telemed.asgi: one thread hop per request)
answer exactly as Django's own ASGI handler does, stream whole series intact, stay audited;
and the faster rendering gives the same pictures."""

from __future__ import annotations

import asyncio
import io
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import numpy as np
import pydicom
import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from PIL import Image
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent, Organization, User
from imaging.dicom.render import display_pixels
from imaging.models import Instance, ReceivedFile
from imaging.services.ingest import receive_file
from imaging.services.renditions import rendered_frame
from telemed.asgi import application
from tests.conftest import logged_in_client
from tests.factories.imaging import ct_dataset, ct_series, dicom_bytes, dicomweb_url

pytestmark = pytest.mark.django_db(transaction=True)

DICOM = 'multipart/related; type="application/dicom"'


@pytest.fixture
def series(clinic: Organization, django_capture_on_commit_callbacks: Any) -> list[pydicom.Dataset]:
    datasets = ct_series(3, patient_id="P-1", study_date="20260301", size=64)
    for ds in datasets:
        with django_capture_on_commit_callbacks(execute=True):
            receive_file(
                content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
            )
    return datasets


@pytest.fixture
def token(clinician: User) -> str:
    return Token.objects.create(user=clinician).key


def _get(
    app: Any, path: str, headers: dict[str, str], *, query: str = "", method: str = "GET"
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI application, as daphne would make it."""

    async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver")]
            + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []
        is_answered = asyncio.Event()
        requests = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await is_answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await application_call(app, scope, receive, send)
        is_answered.set()
        start = sent[0]
        body = b"".join(message.get("body", b"") for message in sent[1:])
        return start["status"], start["headers"], body

    return async_to_sync(call)()


async def application_call(app: Any, scope: dict, receive: Any, send: Any) -> None:
    await app(scope, receive, send)


def _same_boundary(headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[list, bytes]:
    """Headers and body with the multipart boundary (random per answer) replaced."""
    found = re.search(rb"boundary=([0-9a-f]+)", b" ".join(value for _name, value in headers))
    if not found:
        return headers, body
    boundary = found.group(1)
    return (
        [(name, value.replace(boundary, b"B")) for name, value in headers],
        body.replace(boundary, b"B"),
    )


@pytest.mark.parametrize(
    ("level", "suffix", "query", "accept"),
    [
        ("instance", "/frames/1/rendered", "", "image/jpeg"),
        ("instance", "/frames/1/rendered", "window=40,400&viewport=32,32", "image/png"),
        ("instance", "/frames/1/rendered", "window=40", "image/jpeg"),  # 400
        ("instance", "/frames/9/rendered", "", "image/jpeg"),  # 400: no such frame
        ("instance", "/rendered", "", "text/html"),  # 406
        ("series", "/metadata", "", "application/dicom+json"),
        ("series", "", "", DICOM),
        ("instance", "/frames/1", "", 'multipart/related; type="application/octet-stream"'),
    ],
)
def test_dicomweb_reads_answer_as_djangos_own_handler_does(
    series: list[pydicom.Dataset], token: str, level: str, suffix: str, query: str, accept: str
) -> None:
    path = dicomweb_url(series[0], level) + suffix
    headers = {"Authorization": f"Bearer {token}", "Accept": accept}

    ours = _get(application, path, headers, query=query)
    djangos = _get(ASGIHandler(), path, headers, query=query)

    assert ours[0] == djangos[0]
    assert _same_boundary(ours[1], ours[2]) == _same_boundary(djangos[1], djangos[2])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Accept-Language": "en", "Authorization": "Bearer not-a-token"},
    ],
)
def test_refusals_answer_as_djangos_own_handler_does(
    series: list[pydicom.Dataset], headers: dict[str, str]
) -> None:
    path = dicomweb_url(series[0]) + "/frames/1/rendered"

    ours = _get(application, path, headers)
    djangos = _get(ASGIHandler(), path, headers)

    assert ours[0] == 401
    assert ours == djangos


def test_a_study_the_caller_may_not_see_is_404_and_audited_once(
    series: list[pydicom.Dataset], other_clinician: User
) -> None:
    token = Token.objects.create(user=other_clinician).key

    status, _headers, _body = _get(
        application,
        dicomweb_url(series[0]) + "/frames/1/rendered",
        {"Authorization": f"Bearer {token}"},
    )

    assert status == 404
    denied = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED)
    assert denied.count() == 1
    assert denied.get().actor_user_id == other_clinician.pk


def test_frames_read_through_the_web_process_are_audited_with_the_client_address(
    series: list[pydicom.Dataset], token: str, clinician: User
) -> None:
    before = AuditEvent.objects.count()

    for ds in series:
        status, _headers, _body = _get(
            application,
            dicomweb_url(ds) + "/frames/1/rendered",
            {"Authorization": f"Bearer {token}"},
        )
        assert status == 200
    _get(
        application,
        dicomweb_url(series[0], "series") + "/metadata",
        {"Authorization": f"Bearer {token}"},
    )

    events = list(AuditEvent.objects.order_by("id")[before:])
    # A burst of frames is one event (as before), the metadata read another.
    assert [event.detail["dicomweb"] for event in events] == ["rendered", "series metadata"]
    assert {(e.actor_user_id, e.ip_address, e.channel) for e in events} == {
        (clinician.pk, "127.0.0.1", "api")
    }


def test_a_whole_series_streams_intact(series: list[pydicom.Dataset], token: str) -> None:
    status, headers, body = _get(
        application,
        dicomweb_url(series[0], "series"),
        {"Authorization": f"Bearer {token}", "Accept": DICOM},
    )

    assert status == 200
    content_type = dict(headers)[b"Content-Type"].decode()
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    parts = BytesParser(policy=HTTP).parsebytes(head + body).iter_parts()
    assert [part.get_payload(decode=True) for part in parts] == [dicom_bytes(ds) for ds in series]
    # Its length is known before the first byte: a client can show progress.
    assert dict(headers)[b"Content-Length"] == str(len(body)).encode()


def test_head_of_a_rendered_frame_has_the_headers_of_its_get(
    series: list[pydicom.Dataset], token: str
) -> None:
    path = dicomweb_url(series[0]) + "/frames/1/rendered"
    auth = {"Authorization": f"Bearer {token}"}

    ours = _get(application, path, auth, method="HEAD")
    djangos = _get(ASGIHandler(), path, auth, method="HEAD")

    assert ours[:2] == djangos[:2]
    assert dict(ours[1])[b"Content-Type"] == b"image/jpeg"


def test_the_viewers_frames_answer_as_djangos_own_handler_does(
    series: list[pydicom.Dataset], clinician: User
) -> None:
    browser = logged_in_client(clinician)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in browser.cookies.items())
    instance = Instance.objects.get(sop_instance_uid=series[0].SOPInstanceUID)
    path = f"/imaging/instances/{instance.pk}/frames/1.jpg"

    ours = _get(application, path, {"Cookie": cookie}, query="size=128")
    djangos = _get(ASGIHandler(), path, {"Cookie": cookie}, query="size=128")
    anonymous = _get(application, path, {})

    assert ours[0] == 200
    assert ours == djangos
    assert anonymous[0] == 302  # to the login page, as before


def _jpeg_is_progressive(content: bytes) -> bool:
    image = Image.open(io.BytesIO(content))
    return bool(image.info.get("progressive") or image.info.get("progression"))


def test_wado_rendered_frames_are_baseline_and_the_viewers_progressive(
    series: list[pydicom.Dataset], token: str, clinician: User
) -> None:
    _status, _headers, wado = _get(
        application,
        dicomweb_url(series[0]) + "/frames/1/rendered",
        {"Authorization": f"Bearer {token}"},
    )
    instance = Instance.objects.get(sop_instance_uid=series[0].SOPInstanceUID)
    viewer = logged_in_client(clinician).get(f"/imaging/instances/{instance.pk}/frames/1.jpg")

    assert viewer.status_code == 200
    assert not _jpeg_is_progressive(wado)
    assert _jpeg_is_progressive(viewer.content)


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8"])
@pytest.mark.parametrize(("slope", "intercept"), [(1, -1024), (0.5, 3.25), (None, None)])
def test_windowed_pixels_are_those_of_the_linear_window_formula(
    dtype: str, slope: float | None, intercept: float | None
) -> None:
    info = np.iinfo(dtype)
    stored = np.random.default_rng(7).integers(info.min, info.max + 1, (32, 32)).astype(dtype)
    dataset = pydicom.Dataset()
    if slope is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
    center, width = 40.0, 400.0

    pixels = display_pixels(dataset, stored, "MONOCHROME2", (center, width))

    # PS3.3 C.11.2.1.2.1, computed pixel by pixel.
    values = stored.astype(np.float64) * (slope or 1) + (intercept or 0)
    low = center - 0.5 - (width - 1) / 2
    expected = np.clip((values - low) * (255.0 / (width - 1)), 0, 255).astype(np.uint8)
    assert (pixels == expected).all()


def test_windows_that_differ_only_in_the_seventh_digit_are_different_pictures(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    ds = ct_dataset(size=16)
    ds.RescaleSlope, ds.RescaleIntercept = 1, 1_000_000
    ds.PixelData = (np.arange(256, dtype=np.int16) % 100).reshape(16, 16).tobytes()
    with django_capture_on_commit_callbacks(execute=True):
        receive_file(
            content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
        )
    instance = Instance.objects.get()

    lower = rendered_frame(instance=instance, window=(1_000_041, 2), media_type="image/png")
    higher = rendered_frame(instance=instance, window=(1_000_044, 2), media_type="image/png")

    assert (
        np.asarray(Image.open(io.BytesIO(lower))).sum()
        > np.asarray(Image.open(io.BytesIO(higher))).sum()
    )
