"""A clinician uploads a ZIP of a study from a phone over a link that drops, and reloads."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from imaging.models import ReceivedFile, Study, UploadSession
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD
from tests.factories.imaging import ct_series, dicom_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def study_zip(path: Path, accession_number: str) -> Path:
    # Ten 256x256 16-bit slices, stored: about 1.3 MB, six chunks of 256 KB.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as packed:
        for number, ds in enumerate(ct_series(10, size=256, accession_number=accession_number)):
            packed.writestr(f"CT/IM{number:04d}", dicom_bytes(ds))
    return path


def wait_until_finished(page: Any) -> None:
    page.wait_for_function(
        "document.getElementById('upload-ingest-state').textContent.includes('Finished')",
        timeout=120_000,
    )


def test_zip_upload_survives_a_dropped_connection_and_the_study_is_indexed(
    browser: Any, live_server: Any, clinician: User, tmp_path: Path, settings: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMAGING_UPLOAD_DIR = tmp_path / "uploads"
    archive = study_zip(tmp_path / "study.zip", "PHONE1")
    base = live_server.url
    page = log_in(browser.new_page(), base, clinician.email, PASSWORD)

    chunk_offsets: list[str] = []

    def flaky_network(route: Any, request: Any) -> None:
        if request.method != "PATCH":
            route.continue_()
            return
        chunk_offsets.append(request.headers.get("upload-offset", ""))
        if len(chunk_offsets) == 2:
            route.abort("internetdisconnected")  # lost on the way: the server never saw it
        elif len(chunk_offsets) == 4:
            route.fetch()  # the server stores the chunk, but its answer is lost
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/imaging/uploads/files/"), flaky_network)
    page.goto(f"{base}/imaging/upload/")
    page.set_input_files("#upload-files", str(archive))
    page.click("#upload-send")
    wait_until_finished(page)

    assert chunk_offsets[1] == chunk_offsets[2]  # the chunk lost on the way was sent again
    assert chunk_offsets[3] != chunk_offsets[4]  # the stored one was not: the server said so
    assert page.locator("#upload-overall-text").inner_text().startswith("100%")
    assert "10 indexed" in page.locator("#upload-ingest-counts").inner_text()
    study = Study.objects.get()
    assert (study.accession_number, study.number_of_instances) == ("PHONE1", 10)
    assert ReceivedFile.objects.filter(status="ingested", source="archive").count() == 10
    assert UploadSession.objects.get().completed_at is not None
    assert (
        page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('telemed-uploads'))")
        == []
    )


def test_upload_interrupted_by_a_reload_continues_where_it_stopped(
    browser: Any, live_server: Any, clinician: User, tmp_path: Path, settings: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMAGING_UPLOAD_DIR = tmp_path / "uploads"
    archive = study_zip(tmp_path / "study.zip", "RELOAD1")
    base = live_server.url
    page = log_in(browser.new_page(), base, clinician.email, PASSWORD)
    sent_offsets: list[int] = []
    page.on(
        "request",
        lambda request: (
            request.method == "PATCH" and sent_offsets.append(int(request.headers["upload-offset"]))
        ),
    )

    chunks_through: list[int] = []

    def link_goes_down_after_two_chunks(route: Any, request: Any) -> None:
        if request.method == "PATCH" and len(chunks_through) >= 2:
            route.abort("internetdisconnected")
            return
        if request.method == "PATCH":
            chunks_through.append(int(request.headers["upload-offset"]))
        route.continue_()

    link = re.compile(r"/imaging/uploads/files/")
    page.route(link, link_goes_down_after_two_chunks)
    page.goto(f"{base}/imaging/upload/")
    page.set_input_files("#upload-files", str(archive))
    page.click("#upload-send")
    page.locator("#upload-list .status", has_text="retrying").wait_for()
    page.unroute(link)
    page.reload()  # the link is back; the user reloads the page and picks the file again

    assert page.locator("#upload-resume").is_visible()
    sent_before_reload = len(sent_offsets)
    stood_at = UploadSession.objects.get().offset
    page.set_input_files("#upload-files", str(archive))
    page.click("#upload-send")
    wait_until_finished(page)

    assert chunks_through == [0, 256 * 1024]
    assert stood_at == 2 * 256 * 1024
    assert sent_offsets[sent_before_reload] == stood_at  # not from the start again
    assert UploadSession.objects.get().completed_at is not None
    assert ReceivedFile.objects.filter(status="ingested").count() == 10
    study = Study.objects.get()
    assert (study.accession_number, study.number_of_instances) == ("RELOAD1", 10)
