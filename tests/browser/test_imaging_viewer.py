"""A clinician finds a CT study and scrolls through it in the viewer, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Organization, User
from ehr.models import Patient
from imaging.demo import ct_slices
from imaging.models import ReceivedFile, Study
from imaging.services.ingest import receive_file
from tests.browser.conftest import SCREENSHOTS, log_in
from tests.factories.accounts import PASSWORD
from tests.factories.imaging import dicom_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _send_ct(organization: Organization, patient: Patient, count: int) -> Study:
    slices = ct_slices(count=count, size=256)
    for ds in slices:
        ds.PatientID = patient.pin
        # Autocommit: each file's ingest (and renditions) runs as it is received.
        receive_file(
            content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=organization
        )
    return Study.objects.get(study_instance_uid=slices[0].StudyInstanceUID)


def test_clinician_opens_a_study_and_scrolls_through_it(
    browser: Any, live_server: Any, clinic: Organization, clinician: User, patient: Patient
) -> None:
    study = _send_ct(clinic, patient, count=12)
    base = live_server.url
    page = browser.new_page()
    page.set_viewport_size({"width": 1200, "height": 900})
    log_in(page, base, clinician.email, PASSWORD)

    page.click("nav.mainnav >> text=Imaging")
    page.wait_for_selector("table.studies")
    page.screenshot(path=str(SCREENSHOTS / "imaging_study_list.png"))
    page.click("table.studies >> text=CT head without contrast")
    page.wait_for_selector(".series-grid img")
    page.screenshot(path=str(SCREENSHOTS / "imaging_study_page.png"), full_page=True)
    page.click("text=Open viewer")
    page.wait_for_selector("#viewer-image[src]")
    page.wait_for_function("document.getElementById('viewer-stage').dataset.loaded")

    first = page.inner_text("#viewer-slice")
    page.focus("#viewer-stage")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    after_keys = page.inner_text("#viewer-slice")
    page.screenshot(path=str(SCREENSHOTS / "imaging_viewer_default.png"))
    default_src = page.get_attribute("#viewer-image", "src")
    page.select_option("#viewer-preset", "bone")
    page.wait_for_function(
        "document.getElementById('viewer-stage').dataset.loaded.includes('window=300,1500')"
    )
    page.screenshot(path=str(SCREENSHOTS / "imaging_viewer_bone.png"))

    assert study.patient_id == patient.pk
    assert first == "7 / 12"  # opens at the middle slice
    assert after_keys == "9 / 12"
    assert "window=300,1500" in page.get_attribute("#viewer-image", "src")
    assert page.get_attribute("#viewer-image", "src") != default_src
    natural_width = page.evaluate("document.getElementById('viewer-image').naturalWidth")
    assert natural_width == 256

    # On a phone: a swipe up moves to later slices.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_function("document.getElementById('viewer-stage').dataset.loaded")
    box = page.locator("#viewer-stage").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.7
    page.dispatch_event(
        "#viewer-stage",
        "pointerdown",
        {"pointerId": 7, "pointerType": "touch", "clientX": x, "clientY": y, "isPrimary": True},
    )
    page.dispatch_event(
        "#viewer-stage",
        "pointermove",
        {"pointerId": 7, "pointerType": "touch", "clientX": x, "clientY": y - 150},
    )
    page.dispatch_event("#viewer-stage", "pointerup", {"pointerId": 7, "pointerType": "touch"})
    page.screenshot(path=str(SCREENSHOTS / "imaging_viewer_phone.png"))

    assert int(page.inner_text("#viewer-slice").split(" / ")[0]) > 7


def test_a_cine_loop_plays_in_the_viewer(
    browser: Any, live_server: Any, clinic: Organization, clinician: User, patient: Patient
) -> None:
    from imaging.demo import ultrasound_cine

    cine = ultrasound_cine(frames=10, size=96)
    cine.PatientID = patient.pin
    receive_file(content=dicom_bytes(cine), source=ReceivedFile.Source.UPLOAD, organization=clinic)
    study = Study.objects.get(study_instance_uid=cine.StudyInstanceUID)
    base = live_server.url
    page = browser.new_page()
    log_in(page, base, clinician.email, PASSWORD)

    page.goto(f"{base}/imaging/studies/{study.pk}/viewer/")
    # The browser decodes the MP4: H.264 it can play, not merely a file it downloaded.
    page.wait_for_function(
        "(() => { const v = document.getElementById('viewer-video');"
        " return !v.hidden && v.readyState >= 2 && v.videoWidth > 0; })()"
    )
    page.screenshot(path=str(SCREENSHOTS / "imaging_viewer_cine.png"))
    page.click("#viewer-cine")  # to single frames

    assert page.is_hidden("#viewer-video")
    page.wait_for_function("document.getElementById('viewer-stage').dataset.loaded")
    assert page.inner_text("#viewer-slice") == "6 / 10"
