"""Our DIMSE server in-process on 127.0.0.1 at a free port, and dcmtk's tools to talk to it.

The server's handlers run in pynetdicom's threads with their own database connections, so the
tests that use it need `django_db(transaction=True)`: those threads see committed rows only.
Ingest runs eagerly (Celery in-process), before the server answers the sender's release, so
the study is in the index when storescu returns.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import OperationalError
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.association import Association

from imaging.dimse import DicomServer
from imaging.models import ReceivedFile
from tests.conftest import require_program
from tests.factories.imaging import dicom_bytes
from tests.platform import free_port

AE_TITLE = "TELEMED"


@contextmanager
def running_server(**options: object) -> Iterator[DicomServer]:
    # pynetdicom's log at WARNING, as `manage.py dicomserver` sets it: at INFO its standard
    # handlers describe every PDU, and the C-STORE fast lane stands aside for them.
    pynetdicom_logger = logging.getLogger("pynetdicom")
    level = pynetdicom_logger.level
    pynetdicom_logger.setLevel(logging.WARNING)
    server = DicomServer(host="127.0.0.1", port=0, ae_title=AE_TITLE, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
        pynetdicom_logger.setLevel(level)


@pytest.fixture
def dicom_server() -> Iterator[DicomServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def plain_dicom_server() -> Iterator[DicomServer]:
    """The same server with the C-STORE fast lane off: pynetdicom's path for every message."""
    with running_server(fast_store=False) as server:
        yield server


def stored_bytes(sop_instance_uid: str, calling_ae: str | None = None) -> bytes | None:
    """The file kept for an instance received over C-STORE (from `calling_ae`), if any."""
    received = ReceivedFile.objects.filter(original_name=f"{sop_instance_uid}.dcm")
    if calling_ae is not None:
        received = received.filter(calling_ae=calling_ae)
    first = received.first()
    if first is None:
        return None
    with first.file.open("rb") as stored_file:
        return stored_file.read()


def p_data_tf(*pdvs: tuple[int, int, bytes]) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5) of (context ID, message control header, data) items."""
    items = b"".join(
        struct.pack(">IBB", len(data) + 2, context_id, control) + data
        for context_id, control, data in pdvs
    )
    return struct.pack(">BxI", 0x04, len(items)) + items


@contextmanager
def reactor_paused(association: Association) -> Iterator[None]:
    """Hold a requesting association's reactor, as pynetdicom's own send_c_* do, so that the
    next message received waits in `association.dimse` for the test to read."""
    association._reactor_checkpoint.clear()
    while not association._is_paused:
        time.sleep(0.0001)
    try:
        yield
    finally:
        association._reactor_checkpoint.set()


def send_raw(association: Association, *pdus: bytes) -> object:
    """Write PDUs on an established association's socket as they are, and return the DIMSE
    message the peer answers with (None if it does not within the DIMSE timeout)."""
    with reactor_paused(association):
        for pdu in pdus:
            association.dul.socket.socket.sendall(pdu)
        _, response = association.dimse.get_msg(block=True)
    return response


def server_association(server: DicomServer) -> Association:
    """The server's side of its only association."""
    found = eventually(lambda: server.ae.active_associations)
    assert found, "the server has no association"
    [association] = found  # type: ignore[misc]
    return association


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
