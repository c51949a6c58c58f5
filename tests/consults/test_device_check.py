"""The device check: the quality verdict's thresholds and the probes it measures with."""

from __future__ import annotations

import json
import re
import zlib

import pytest
from django.test import Client

from accounts.models import User
from consults.join_views import PROBE_MAX_BYTES
from consults.services.link_quality import expected_quality, levels_for_browser
from tests.conftest import logged_in_client


@pytest.mark.parametrize(
    ("down_kbps", "up_kbps", "rtt_ms", "expected"),
    [
        (20000, 5000, 40, "good"),
        (1500, 1500, 400, "good"),
        (5000, 1499, 40, "normal"),  # the slower direction decides
        (2000, 2000, 600, "normal"),  # a long delay costs a level
        (500, 800, 200, "normal"),
        (300, 300, 150, "low"),  # a 3G phone in a village
        (150, 400, 1500, "low"),
        (149, 5000, 100, "audio"),
        (1000, 1000, 2000, "audio"),
        (0, 0, 0, "audio"),
    ],
)
def test_expected_quality_thresholds(down_kbps: int, up_kbps: int, rtt_ms: int, expected: str):
    assert expected_quality(down_kbps=down_kbps, up_kbps=up_kbps, rtt_ms=rtt_ms) == expected


def page_config(response) -> dict:
    match = re.search(
        r'<script id="device-check-config" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, "the page carries its configuration"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_device_check_page_needs_no_login_and_carries_the_servers_thresholds(client: Client):
    response = client.get("/join/device-check/")

    config = page_config(response)
    assert response.status_code == 200
    assert config["levels"] == levels_for_browser()
    assert [level["min_kbps"] for level in config["levels"]] == [1500, 500, 150]
    assert set(config["verdicts"]) == {"good", "normal", "low", "audio"}
    assert config["probeMaxBytes"] == PROBE_MAX_BYTES
    assert 'src="/static/consults/device_check.js"' in response.content.decode()


def test_device_check_page_works_for_logged_in_users(clinician: User):
    response = logged_in_client(clinician).get("/join/device-check/")

    assert response.status_code == 200
    assert "Start the check" in response.content.decode()


@pytest.mark.django_db
def test_device_check_offers_the_way_back_only_to_our_own_pages(client: Client):
    own = client.get("/join/device-check/?next=/join/abc/")
    foreign = client.get("/join/device-check/?next=https://evil.example/")

    assert 'href="/join/abc/"' in own.content.decode()
    assert "Back to my visit" in own.content.decode()
    assert 'href="https://evil.example/"' not in foreign.content.decode()
    assert "Back to my visit" not in foreign.content.decode()


@pytest.mark.django_db
def test_probe_can_be_capped_by_the_page_for_quick_runs(client: Client):
    config = page_config(client.get("/join/device-check/?probe_max=4096"))

    assert config["probeMaxBytes"] == 4096


@pytest.mark.django_db
@pytest.mark.parametrize(("asked", "sent"), [(0, 0), (1000, 1000), (10**9, PROBE_MAX_BYTES)])
def test_download_probe_sends_the_asked_size_capped_and_not_cacheable(
    client: Client, asked: int, sent: int
):
    response = client.get(f"/join/device-check/probe?bytes={asked}")

    assert response.status_code == 200
    assert len(response.content) == sent
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Type"] == "application/octet-stream"


@pytest.mark.django_db
def test_download_probe_bytes_do_not_compress(client: Client):
    body = client.get("/join/device-check/probe?bytes=65536").content

    # A compressing proxy would make a compressible probe look like a fast link.
    assert len(zlib.compress(body)) > 0.99 * len(body)
    assert body != client.get("/join/device-check/probe?bytes=65536").content


@pytest.mark.django_db
def test_upload_probe_counts_the_bytes_and_needs_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    config = page_config(client.get("/join/device-check/"))
    body = bytes(100_000)

    refused = client.post("/join/device-check/probe", body, content_type="application/octet-stream")
    answered = client.post(
        "/join/device-check/probe",
        body,
        content_type="application/octet-stream",
        headers={"X-CSRFToken": config["csrfToken"]},
    )

    assert refused.status_code == 403
    assert answered.status_code == 200
    assert answered.json() == {"received": 100_000}
    assert "no-store" in answered["Cache-Control"]


@pytest.mark.django_db
def test_upload_probe_refuses_more_than_the_cap(client: Client):
    response = client.post(
        "/join/device-check/probe",
        bytes(PROBE_MAX_BYTES + 1),
        content_type="application/octet-stream",
    )

    assert response.status_code == 413
