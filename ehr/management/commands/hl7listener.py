"""`python manage.py hl7listener`: receive HL7 v2 lab results over MLLP (see ehr/hl7/server.py).

Binds HL7_HOST:HL7_PORT (127.0.0.1:2575 by default). When the port is taken it keeps trying
instead of exiting: under honcho one process exiting stops the whole platform, and the port
is usually only held by a previous listener still shutting down. /healthz shows "hl7" as
failing until the port is bound, because the heartbeat starts only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from ehr.hl7.server import MllpListener
from telemed.health import record_heartbeat

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
BIND_RETRY_SECONDS = 2


class Command(BaseCommand):
    help = "Receive HL7 v2 ORU^R01 lab results over MLLP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HL7_HOST)
        parser.add_argument("--port", type=int, default=settings.HL7_PORT)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        asyncio.run(self._serve(host=host, port=port))
        self.stdout.write("HL7 listener stopped.")

    async def _serve(self, *, host: str, port: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        listener = MllpListener(host=host, port=port, allowed_clients=settings.HL7_ALLOWED_CLIENTS)
        while not stop.is_set():
            try:
                await listener.start()
                break
            except OSError as error:
                logger.error("HL7 listener cannot bind %s:%s (%s); retrying", host, port, error)
                await _wait(stop, BIND_RETRY_SECONDS)
        if stop.is_set():
            return
        self.stdout.write(f"HL7 listener (MLLP) on {host}:{listener.port}")
        self.stdout.flush()
        try:
            while not stop.is_set():
                try:
                    # Redis is a blocking client: keep it off the loop serving the labs.
                    await asyncio.to_thread(record_heartbeat, "hl7")
                except Exception:  # a Redis hiccup must not stop the listener
                    logger.exception("HL7 listener could not write its heartbeat")
                await _wait(stop, HEARTBEAT_SECONDS)
        finally:
            await listener.close()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
