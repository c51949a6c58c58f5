"""`python manage.py mediaserver`: the aiortc media broker (see consults/media/server.py).

Takes its instructions from the channel layer (group `media.rooms`) and answers on each
session's group, so it needs a channel layer shared with the web process (Redis, i.e.
REDIS_URL set). ICE servers come from settings.WEBRTC_ICE_SERVERS; with none, only host
candidates are used (clients on the same network or a reachable public address).
Writes a "media" heartbeat every few seconds for /healthz.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiortc import RTCIceServer
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import caches
from django.core.management.base import BaseCommand

from consults.media.claims import RoomClaims
from consults.media.server import MediaServer
from consults.services.ice import ice_servers_for
from telemed.health import record_heartbeat
from telemed.heap import freeze_startup_objects

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10


def ice_servers_from_settings() -> list[RTCIceServer]:
    """The ICE servers of a new room: settings.WEBRTC_ICE_SERVERS, TURN credentials made now
    when they are short-lived (consults/services/ice.py)."""
    servers = []
    for entry in ice_servers_for("broker"):
        servers.append(
            RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    return servers


class Command(BaseCommand):
    help = "Run the media broker: forwards participants' audio and video without re-encoding."

    def handle(self, *args: Any, **options: Any) -> None:
        freeze_startup_objects()
        asyncio.run(self._serve())
        self.stdout.write("Media broker stopped.")

    async def _serve(self) -> None:
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer):
            logger.warning(
                "The channel layer is in-memory: the web process cannot reach this broker. "
                "Set REDIS_URL."
            )
        # Rooms are shared out among the site's brokers through the cache (Redis).
        claims = RoomClaims(caches["default"])
        server = MediaServer(layer, ice_servers=ice_servers_from_settings, claims=claims)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop)
        serving = asyncio.ensure_future(server.run())
        self.stdout.write(
            f"Media broker {claims.owner} listening on the channel layer group media.rooms"
        )
        self.stdout.flush()
        while not serving.done():
            try:
                await asyncio.to_thread(record_heartbeat, "media")
            except Exception:  # a Redis hiccup must not stop the broker
                logger.exception("media broker could not write its heartbeat")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(serving), timeout=HEARTBEAT_SECONDS)
        await serving
