"""Our DIMSE server in-process on 127.0.0.1 at a free port, and dcmtk's tools to talk to it.

The server's handlers run in pynetdicom's threads with their own database connections, so the
tests that use it need `django_db(transaction=True)`: those threads see committed rows only.
Ingest runs eagerly (Celery in-process), before the server answers the sender's release, so
the study is in the index when storescu returns.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import OperationalError
from pydicom import dcmread
from pydicom.dataset import Dataset

from imaging.dimse import DicomServer
from tests.conftest import require_program
from tests.factories.imaging import dicom_bytes
from tests.platform import free_port

AE_TITLE = "TELEMED"


@pytest.fixture
def dicom_server() -> Iterator[DicomServer]:
    server = DicomServer(host="127.0.0.1", port=0, ae_title=AE_TITLE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def dcmtk(
    program: str, *arguments: str | Path, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run one of dcmtk's tools (Nagle off, as the README tells users) and return its result."""
    path = require_program(program, "dcmtk")
    return subprocess.run(
        [path, *map(str, arguments)],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_files(directory: Path, datasets: list[Dataset]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, ds in enumerate(datasets):
        path = directory / f"{number:04d}.dcm"
        path.write_bytes(dicom_bytes(ds))
        paths.append(path)
    return paths


def read_dir(directory: Path) -> list[Dataset]:
    return [dcmread(path) for path in sorted(directory.iterdir()) if path.is_file()]


class StoreSCP:
    """dcmtk's storescp on a free port of 127.0.0.1: a move destination."""

    def __init__(self, directory: Path, ae_title: str, *options: str) -> None:
        self.directory = directory
        self.ae_title = ae_title
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        path = require_program("storescp", "dcmtk")
        self.process = subprocess.Popen(
            [path, "-aet", ae_title, "-od", str(directory), *options, str(self.port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 10
        while not self._is_listening():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                pytest.fail(f"storescp did not start: {self.process.stdout.read()}")
            time.sleep(0.05)

    def _is_listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def eventually(check: object, seconds: float = 10) -> object:
    """`check()` once it is truthy. The test database is SQLite in memory with a shared cache:
    a read while a server thread writes fails at once with "table is locked". Ask again."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()  # type: ignore[operator]
        except OperationalError:
            result = None
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)
