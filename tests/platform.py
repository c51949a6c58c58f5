"""Starting the whole platform as `make run` does, for the tests that need every process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings


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


def platform_env(var_dir: Path) -> tuple[str, dict[str, str]]:
    """The platform's address and environment: free ports, its own SQLite file; Redis is
    CI's real one when REDIS_URL is set, else embedded."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TELEMED_VAR_DIR": str(var_dir),
        "TELEMED_PORT": str(port),
        "HL7_PORT": str(free_port()),
        "DICOM_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "SITE_URL": url,
    }
    env.pop("DEBUG", None)
    return url, env


def start_platform(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runplatform"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_platform(run: subprocess.Popen, var_dir: Path) -> None:
    """Whatever is still running of this platform, killed: honcho starts each process in a
    session of its own, so none is left behind."""
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
    for pid in processes_started_for(var_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    run.wait()
