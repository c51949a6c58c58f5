"""The network listeners of the platform (HL7 over MLLP, the DICOM server) wait for a taken
port instead of exiting — under honcho one process exiting stops the whole platform — bind
once it is free, and stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings


def wait_for_line(lines: list[str], text: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in lines):
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in the output: {''.join(lines)}")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("command_name", "serving", "stopped"),
    [
        ("hl7listener", "HL7 listener (MLLP) on 127.0.0.1:{port}", "HL7 listener stopped."),
        ("dicomserver", "DICOM server TELEMED on 127.0.0.1:{port}", "DICOM server stopped."),
    ],
)
def test_listener_waits_for_a_taken_port_and_stops_on_sigterm(
    tmp_path: Path, command_name: str, serving: str, stopped: str
) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    env = {**os.environ, "REDIS_URL": "", "TELEMED_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    command = subprocess.Popen(
        [sys.executable, "manage.py", command_name, "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(command.stdout), daemon=True)
    reader.start()
    try:
        wait_for_line(lines, "cannot bind")
        assert command.poll() is None
        blocker.close()
        wait_for_line(lines, serving.format(port=port))
        # A client that connects and goes away must not keep the listener from stopping.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

        command.send_signal(signal.SIGTERM)
        command.wait(timeout=60)
        reader.join(timeout=5)
    finally:
        blocker.close()
        if command.poll() is None:
            command.kill()
            command.wait()

    output = "".join(lines)
    assert command.returncode == 0, output
    assert stopped in output
