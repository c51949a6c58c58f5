"""A patient on a phone opens their join link, checks the camera, microphone and link, and
reads what quality to expect. Chromium's fake camera and microphone stand in for a phone's."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Organization, User
from consults.services.links import issue_join_link
from ehr.models import Patient
from tests.browser.conftest import CHROMIUM_FLAGS, SCREENSHOTS
from tests.consults.sessions import book_visit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MEDIA_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def launch_phone(
    chromium_path: str, tmp_path: Path, live_server: Any, *, allow: bool
) -> Iterator[Any]:
    """A phone-sized headless Chromium whose camera and microphone are Chromium's fakes,
    allowed for the live server or (allow=False) refused as a patient who taps "Block"."""
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # see tests/browser/conftest.py
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=chromium_path,
                headless=True,
                # The fake UI answers the permission prompt with yes; without it the prompt is
                # dismissed, which the page sees as a refusal.
                args=CHROMIUM_FLAGS + (MEDIA_FLAGS if allow else MEDIA_FLAGS[:1]),
                viewport={"width": 390, "height": 844},
                locale="en-US",
                is_mobile=True,
                has_touch=True,
            )
            if allow:
                context.grant_permissions(["camera", "microphone"], origin=live_server.url)
            try:
                yield context
            finally:
                context.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def phone(chromium_path: str, tmp_path: Path, live_server: Any) -> Iterator[Any]:
    yield from launch_phone(chromium_path, tmp_path, live_server, allow=True)


@pytest.fixture
def phone_refusing_camera(chromium_path: str, tmp_path: Path, live_server: Any) -> Iterator[Any]:
    yield from launch_phone(chromium_path, tmp_path, live_server, allow=False)


def test_patient_checks_camera_microphone_and_link_from_the_join_page(
    phone: Any,
    live_server: Any,
    clinic: Organization,
    clinician: User,
    coordinator: User,
    specialist: User,
    patient: Patient,
):
    clinic.phone = "+996 3534 5 12 34"
    clinic.save(update_fields=["phone"])
    participant = book_visit(
        clinician=clinician, coordinator=coordinator, specialist=specialist, patient=patient,
        starts_at=timezone.now() + dt.timedelta(minutes=10),
    )  # fmt: skip
    url = issue_join_link(participant=participant)
    token = url.rstrip("/").rsplit("/", 1)[-1]
    page = phone.new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server.url}/join/{token}/")
    assert "Your remote visit" in page.inner_text("h1")
    page.screenshot(path=str(SCREENSHOTS / "join-link-phone.png"), full_page=True)
    page.click("#device-check-link")
    page.wait_for_url(lambda address: "/join/device-check/" in address)
    # Small probes keep the run quick; the page still grows them as it would on a phone.
    page.goto(page.url + "&probe_max=65536")
    page.click("#dc-start")

    page.wait_for_function("document.getElementById('dc-video').videoWidth > 0")
    page.wait_for_function("Number(document.getElementById('dc-meter').dataset.peak) > 0.01")
    page.wait_for_selector("#dc-verdict:not([hidden])", timeout=20000)
    verdict = page.inner_text("#dc-verdict")
    quality = page.get_attribute("#dc-verdict", "data-quality")
    assert quality in {"good", "normal", "low", "audio"}
    assert "video" in verdict or "audio" in verdict
    assert "kbit/s" in page.inner_text("#dc-numbers")
    assert page.inner_text("#dc-media-status").startswith("Camera works")
    page.screenshot(path=str(SCREENSHOTS / "device-check-phone.png"), full_page=True)

    page.click("text=Back to my visit")
    page.click("button.join-button")
    page.wait_for_url(f"{live_server.url}/join/session/{participant.appointment_id}/")
    assert "The session will open here" in page.inner_text("main")


def test_refused_camera_is_explained_and_the_link_is_still_measured(
    phone_refusing_camera: Any, live_server: Any
):
    page = phone_refusing_camera.new_page()
    page.goto(f"{live_server.url}/join/device-check/?probe_max=65536")

    page.click("#dc-start")

    page.wait_for_selector("#dc-media-status.error")
    assert page.get_attribute("#dc-media-status", "data-error") == "NotAllowedError"
    assert "allow both" in page.inner_text("#dc-media-status")
    page.wait_for_selector("#dc-verdict:not([hidden])", timeout=20000)
    page.screenshot(path=str(SCREENSHOTS / "device-check-refused.png"), full_page=True)
