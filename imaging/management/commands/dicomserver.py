"""`python manage.py dicomserver`: our DIMSE server (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET).

Binds DICOM_HOST:DICOM_PORT (127.0.0.1:11112 by default) as DICOM_AE_TITLE ("TELEMED"). When
the port is taken it keeps trying instead of exiting: under honcho one process exiting stops
the whole platform, and the port is usually only held by a previous server still shutting
down. /healthz shows "dicom" as failing until the port is bound: the heartbeat starts then.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import pydicom.config
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from imaging.dimse import DicomServer
from telemed.health import record_heartbeat
from telemed.heap import freeze_startup_objects

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
MAIN_THREAD_TICK = 0.2
BIND_RETRY_SECONDS = 2


class Command(BaseCommand):
    help = "Receive, answer queries for and send DICOM over DIMSE (pynetdicom)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.DICOM_HOST)
        parser.add_argument("--port", type=int, default=settings.DICOM_PORT)
        parser.add_argument("--ae-title", default=settings.DICOM_AE_TITLE)

    def handle(self, *args: Any, host: str, port: int, ae_title: str, **options: Any) -> None:
        # pynetdicom logs every message at INFO: a line per instance of a 2000-slice study.
        verbose = options.get("verbosity", 1) >= 2
        logging.getLogger("pynetdicom").setLevel(logging.INFO if verbose else logging.WARNING)
        # This process reads only DIMSE command sets: pydicom checking each UID in them with a
        # regular expression (to warn) was a tenth of its CPU per C-STORE. The worker checks
        # the stored files' UIDs itself (imaging/dicom/parse.py).
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        server = None
        while not stop.is_set():
            try:
                server = DicomServer(host=host, port=port, ae_title=ae_title)
                break
            except OSError as error:
                message = f"DICOM server cannot bind {host}:{port} ({error}); retrying"
                logger.error(message)
                self.stderr.write(message)
                _sleep_unless(stop, BIND_RETRY_SECONDS)
        if server is None:
            return
        freeze_startup_objects()
        server.start()
        self.stdout.write(f"DICOM server {ae_title} on {host}:{server.port}")
        self.stdout.flush()
        heartbeat = threading.Thread(target=_beat, args=(stop,), name="heartbeat", daemon=True)
        heartbeat.start()
        try:
            while not stop.is_set():
                time.sleep(MAIN_THREAD_TICK)
        finally:
            server.stop()
            heartbeat.join(timeout=5)
        self.stdout.write("DICOM server stopped.")


def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    # The main thread never waits *on* the event: the signal handler runs in the main thread
    # and sets the event, which takes the event's lock — held by the main thread if it were
    # inside Event.wait, a deadlock (seen: SIGTERM then ignored for good).
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(MAIN_THREAD_TICK)


def _beat(stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            record_heartbeat("dicom")
        except Exception:  # a Redis hiccup must not stop the server
            logger.exception("DICOM server could not write its heartbeat")
        stop.wait(HEARTBEAT_SECONDS)
