"""Two demo users hold a real call through the media broker, each in a headless Chromium with
a fake camera, microphone and screen; each page shows the other's video (decoded frames
counted), and the call's controls change what really flows: weak-link mode, audio only,
screen sharing, and a media connection lost by the broker comes back by itself."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from tests.browser.conftest import CHROMIUM_FLAGS
from tests.platform import healthz, kill_platform, platform_env, start_platform

pytestmark = [pytest.mark.browser, pytest.mark.platform]

CALL_FLAGS = [
    *CHROMIUM_FLAGS,
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # getDisplayMedia picks the (fake) screen without asking.
    "--auto-select-desktop-capture-source=Entire screen",
    "--allow-loopback-in-peer-connection",
    # Headless pages have no user gesture; remote video with sound must still play.
    "--autoplay-policy=no-user-gesture-required",
]
REMOTE_FRAMES = """() => [...document.querySelectorAll('#remote-videos video')]
    .map((video) => video.getVideoPlaybackQuality().totalVideoFrames)"""
REMOTE_SIZES = """() => [...document.querySelectorAll('#remote-videos video')]
    .map((video) => [video.videoWidth, video.videoHeight])"""
AUDIO_PACKETS = """async () => {
    const pc = window.telemedSession.peerConnection;
    if (!pc) return 0;
    let packets = 0;
    (await pc.getStats()).forEach((entry) => {
        if (entry.type === 'inbound-rtp' && entry.kind === 'audio') {
            packets += entry.packetsReceived;
        }
    });
    return packets;
}"""


def wait_until(page: Any, condition: Callable[[], Any], seconds: float = 45) -> Any:
    """The first true value of `condition`, polled every half second; fails with the last."""
    deadline = time.monotonic() + seconds
    value = condition()
    while not value and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        value = condition()
    return value


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The whole platform as `make run` starts it (web, broker, ...), in its own directory."""
    var_dir = tmp_path_factory.mktemp("platform")
    url, env = platform_env(var_dir)
    run = start_platform(env, var_dir / "run.log")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            health = healthz(url)
            if health and health.get("media", {}).get("ok") and health["web"]["ok"]:
                break
            time.sleep(1)
        else:
            pytest.fail(f"the platform did not start: {(var_dir / 'run.log').read_text()}")
        log = (var_dir / "run.log").read_text()
        embedded = re.search(r"Embedded Redis \(valkey\) on (\S+)", log)
        env["PLATFORM_REDIS_URL"] = f"{embedded.group(1)}/0" if embedded else env["REDIS_URL"]
        yield url, env
    finally:
        kill_platform(run, var_dir)


@pytest.fixture(scope="module")
def call(platform: tuple[str, dict[str, str]], chromium_path: str) -> Iterator[dict[str, Any]]:
    """The specialist's and the clinician's pages in one session made by `demo_session`."""
    from playwright.sync_api import sync_playwright

    url, env = platform
    printed = subprocess.run(
        [sys.executable, "manage.py", "demo_session"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    session_url = re.search(r"http\S+", printed).group()

    with sync_playwright() as playwright:
        pages = []
        for email in ("specialist@demo.kg", "clinician@demo.kg"):
            browser = playwright.chromium.launch(executable_path=chromium_path, args=CALL_FLAGS)
            page = browser.new_context().new_page()
            page.goto(f"{url}/accounts/login/")
            page.fill("input[name=username]", email)
            page.fill("input[name=password]", "telemed-demo")
            page.press("input[name=password]", "Enter")
            page.wait_for_url(lambda address: "login" not in address)
            page.goto(session_url)
            pages.append(page)
        yield {
            "pages": pages,
            "appointment_id": int(re.search(r"/sessions/(\d+)/", session_url).group(1)),
            "redis_url": env["PLATFORM_REDIS_URL"],
        }


def frames_seen(pages: list[Any], at_least: int) -> list[list[int]] | None:
    seen = [page.evaluate(REMOTE_FRAMES) for page in pages]
    return seen if all(frames and max(frames) >= at_least for frames in seen) else None


def width_of_remote(page: Any) -> int:
    sizes = page.evaluate(REMOTE_SIZES)
    return max((width for width, _ in sizes), default=0)


def participant_notes(page: Any) -> str:
    return page.inner_text("#participants")


def test_two_demo_users_see_each_other_through_the_broker(call: dict[str, Any]) -> None:
    pages = call["pages"]
    assert wait_until(pages[0], lambda: frames_seen(pages, 30), 60), [
        page.evaluate(REMOTE_FRAMES) for page in pages
    ]


def test_weak_link_mode_sends_and_receives_a_small_picture(call: dict[str, Any]) -> None:
    specialist, clinician = call["pages"]
    assert wait_until(specialist, lambda: frames_seen(call["pages"], 30), 60)
    assert width_of_remote(specialist) > 320
    assert width_of_remote(clinician) > 320

    specialist.click("#btn-weak")

    # The specialist sends a small picture; the broker sends them a low copy of the other.
    assert wait_until(clinician, lambda: 0 < width_of_remote(clinician) <= 320)
    assert wait_until(specialist, lambda: 0 < width_of_remote(specialist) <= 320)
    assert "weak link" in participant_notes(clinician)
    assert specialist.get_attribute("#btn-weak", "aria-pressed") == "true"

    specialist.click("#btn-weak")

    # Bigger again (Chrome climbs back as its bandwidth estimate grows; on a busy machine
    # its CPU adaptation may keep it below the camera's 640).
    assert wait_until(clinician, lambda: width_of_remote(clinician) > 320, 60), width_of_remote(
        clinician
    )
    assert wait_until(specialist, lambda: width_of_remote(specialist) > 320, 60), width_of_remote(
        specialist
    )
    assert wait_until(clinician, lambda: "weak link" not in participant_notes(clinician))


def test_audio_only_stops_video_but_not_sound(call: dict[str, Any]) -> None:
    specialist, clinician = call["pages"]
    assert wait_until(specialist, lambda: frames_seen(call["pages"], 30), 60)

    specialist.click("#btn-audio-only")
    assert wait_until(clinician, lambda: "audio only" in participant_notes(clinician))
    specialist.wait_for_timeout(2000)  # frames already on their way
    frames_before = sum(specialist.evaluate(REMOTE_FRAMES))
    audio_before = specialist.evaluate(AUDIO_PACKETS)
    specialist.wait_for_timeout(3000)

    assert sum(specialist.evaluate(REMOTE_FRAMES)) - frames_before <= 3
    assert specialist.evaluate(AUDIO_PACKETS) - audio_before > 50  # 20 ms packets: ~150

    specialist.click("#btn-audio-only")
    frames_back = sum(specialist.evaluate(REMOTE_FRAMES))
    assert wait_until(
        specialist, lambda: sum(specialist.evaluate(REMOTE_FRAMES)) > frames_back + 30
    )


def test_screen_sharing_replaces_the_camera_for_the_others(call: dict[str, Any]) -> None:
    specialist, clinician = call["pages"]
    assert wait_until(specialist, lambda: frames_seen(call["pages"], 30), 60)

    def clinician_sees_wide() -> bool:
        sizes = [(w, h) for w, h in clinician.evaluate(REMOTE_SIZES) if h]
        return bool(sizes) and sizes[0][0] / sizes[0][1] > 1.5  # 16:9 screen, not 4:3

    assert not clinician_sees_wide()
    specialist.click("#btn-screen")

    assert wait_until(clinician, clinician_sees_wide)
    assert "sharing screen" in participant_notes(clinician)

    specialist.click("#btn-screen")

    assert wait_until(clinician, lambda: not clinician_sees_wide())
    assert wait_until(clinician, lambda: "sharing screen" not in participant_notes(clinician))


def test_a_media_connection_lost_by_the_broker_comes_back_by_itself(call: dict[str, Any]) -> None:
    specialist, clinician = call["pages"]
    assert wait_until(specialist, lambda: frames_seen(call["pages"], 30), 60)
    key = specialist.evaluate("() => window.telemedSession.config.participantKey")

    # The broker drops the specialist's connection (as after a broker-side failure); the
    # signaling socket stays up, so only the media must come back.
    # (From another thread: Playwright's own event loop runs in this one.)
    layer = RedisChannelLayer(hosts=[call["redis_url"]])
    leave = layer.group_send(
        "media.rooms",
        {"type": "media.signal", "appointment_id": call["appointment_id"],
         "participant_key": key, "signal": {"type": "leave"}},
    )  # fmt: skip
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, leave).result(timeout=30)

    assert wait_until(
        specialist, lambda: not specialist.evaluate(REMOTE_FRAMES) or specialist.locator(
            "#call-quality[data-problem]").count(), 45
    )  # fmt: skip
    assert wait_until(specialist, lambda: frames_seen(call["pages"], 30), 60), [
        page.evaluate(REMOTE_FRAMES) for page in call["pages"]
    ]


TICK_CONSENT_THEN_A_PARTICIPANT_LIST_ARRIVES = """() => {
  const box = document.getElementById("recording-consent");
  box.click();
  const list = { type: "participants", state: "admitted", participants: [] };
  document.getElementById("session").dispatchEvent(new CustomEvent("signal", { detail: list }));
  return box.checked;
}"""

# Two doctors tick at the same moment: the state read before the second tick may reach a page
# after the one read after it. The page keeps the latest read.
AN_OLDER_STATE_ARRIVES_LATE = """() => {
  const older = { type: "recording", recording: false, recording_id: null, started_by: "",
                  consents: {}, reason: "", as_of: 1 };
  document.getElementById("session").dispatchEvent(new CustomEvent("signal", { detail: older }));
  return !document.getElementById("btn-record").disabled;
}"""


def test_a_consented_recording_becomes_an_mp4_on_the_consult(
    call: dict[str, Any], platform: tuple[str, dict[str, str]]
) -> None:
    specialist, clinician = call["pages"]
    url, _ = platform
    assert wait_until(specialist, lambda: frames_seen(call["pages"], 30), 60)
    assert specialist.locator("#btn-record").is_disabled()  # nobody has consented yet

    specialist.check("#recording-consent")
    assert wait_until(specialist, lambda: specialist.locator("#btn-record").is_disabled())
    # A participant list that arrives before the server has the tick does not untick the box.
    # (Click and list in one turn of the page's JavaScript: the server cannot answer between.)
    assert clinician.evaluate(TICK_CONSENT_THEN_A_PARTICIPANT_LIST_ARRIVES)
    assert wait_until(specialist, lambda: specialist.locator("#btn-record").is_enabled())
    assert clinician.locator("#recording-consent").is_checked()
    assert specialist.evaluate(AN_OLDER_STATE_ARRIVES_LATE)
    specialist.click("#btn-record")

    # Everyone sees that the call is being recorded.
    for page in (specialist, clinician):
        assert wait_until(page, lambda page=page: page.locator("#recording-indicator").is_visible())
    specialist.wait_for_timeout(4000)
    specialist.click("#btn-record")
    assert wait_until(clinician, lambda: not clinician.locator("#recording-indicator").is_visible())

    # The worker composes it; the session's recordings page then plays it.
    recordings = f"{url}/consults/sessions/{call['appointment_id']}/recordings/"
    viewer = specialist.context.new_page()

    def ready() -> bool:
        viewer.goto(recordings)
        return viewer.locator("video").count() > 0

    assert wait_until(viewer, ready, 120), viewer.inner_text("main")
    response = viewer.request.get(url + viewer.locator("video").first.get_attribute("src"))
    assert response.status == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.body()[4:8] == b"ftyp"
    viewer.close()
