"""`make run` end to end: every process starts, /healthz sees them, Ctrl-C stops them all."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.platform import (
    healthz,
    kill_platform,
    platform_env,
    processes_started_for,
    start_platform,
)

pytestmark = pytest.mark.platform


def test_run_command_starts_every_process_and_ctrl_c_stops_them(tmp_path: Path):
    url, env = platform_env(tmp_path)
    run = start_platform(env, tmp_path / "run.log")
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline:
            health = healthz(url)
            if health and all(part["ok"] for part in health.values()):
                break
            assert run.poll() is None, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        output = (tmp_path / "run.log").read_text()

        assert health is not None, output
        parts = {"database", "redis", *settings.PLATFORM_PROCESSES}
        assert {"web", "worker", "beat", "hl7", "dicom", "media"} <= parts
        assert {name: part["ok"] for name, part in health.items()} == dict.fromkeys(parts, True), (
            health,
            output,
        )
        deadline = time.monotonic() + 10
        while "clinician@demo.kg" not in output and time.monotonic() < deadline:
            time.sleep(0.2)
            output = (tmp_path / "run.log").read_text()
        assert f"Telemed is running at {url}/" in output
        assert "clinician@demo.kg" in output
        assert "telemed-demo" in output
        login = urllib.request.urlopen(f"{url}/accounts/login/", timeout=5)
        assert login.status == 200
        # runner, honcho, and the Procfile's web, worker, beat, hl7, dicom, media
        assert len(processes_started_for(tmp_path)) >= 8

        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            kill_platform(run, tmp_path)

    deadline = time.monotonic() + 15
    while processes_started_for(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_started_for(tmp_path) == [], (tmp_path / "run.log").read_text()
    assert healthz(url) is None
