"""`make run` end to end: every process starts, /healthz sees them, Ctrl-C stops them all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.platform


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthz(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)
    except OSError:
        return None


def processes_started_for(var_dir: Path) -> list[int]:
    """Pids of processes whose environment names this run's var directory."""
    marker = f"TELEMED_VAR_DIR={var_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_run_command_starts_every_process_and_ctrl_c_stops_them(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TELEMED_VAR_DIR": str(tmp_path),
        "TELEMED_PORT": str(port),
        "HL7_PORT": str(free_port()),
        # Its own SQLite file; Redis is CI's real one when REDIS_URL is set, else embedded.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    env.pop("DEBUG", None)
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [sys.executable, "manage.py", "runplatform"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
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
        assert {"web", "worker", "beat", "hl7"} <= parts
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
        assert len(processes_started_for(tmp_path)) >= 4  # runner, honcho, web, worker, beat

        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            # Honcho starts each process in a session of its own: leave none behind.
            for pid in processes_started_for(tmp_path):
                os.kill(pid, signal.SIGKILL)
        log.close()

    deadline = time.monotonic() + 15
    while processes_started_for(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_started_for(tmp_path) == [], (tmp_path / "run.log").read_text()
    assert healthz(url) is None
