"""Which media broker serves which room, when several run for one site.

Every broker listens on the channel-layer group ``media.rooms`` and so hears every session's
signals; a room is served by the one broker that holds its claim in the shared cache (Redis
in production): the first broker to see a room's first signal claims it (an atomic
``add``), renews the claim while the room lives, and gives it up when the room empties. A
broker that dies stops renewing; its claims expire after ``ttl`` seconds, and the next
signal of such a room (the browsers open a new media connection by themselves when theirs
fails) is claimed by a live broker. A broker that finds its claim taken over (it stalled
past the ``ttl``) drops the room, so that two brokers never serve one room for long.

No Django here: ``cache`` is anything with Django's cache methods (``add``, ``get``,
``touch``, ``delete``); they are called in a thread, since Django's cache blocks.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

CLAIM_SECONDS = 30


def broker_name() -> str:
    """Unique per broker process, readable in the cache: host, process id, random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RoomClaims:
    def __init__(self, cache: Any, owner: str | None = None, ttl: int = CLAIM_SECONDS) -> None:
        self.cache = cache
        self.owner = owner or broker_name()
        self.ttl = ttl

    @staticmethod
    def key(room_id: str) -> str:
        return f"media:room:{room_id}"

    async def claim(self, room_id: str) -> bool:
        """Does this broker serve `room_id`? Claims it if nobody does."""
        return await asyncio.to_thread(self._claim, self.key(room_id))

    def _claim(self, key: str) -> bool:
        if self.cache.add(key, self.owner, self.ttl):
            return True
        if self.cache.get(key) == self.owner:
            self.cache.touch(key, self.ttl)
            return True
        return False

    async def renew(self, room_ids: list[str]) -> list[str]:
        """Renew the claims of the rooms this broker serves; returns those it has lost."""
        return await asyncio.to_thread(self._renew, room_ids)

    def _renew(self, room_ids: list[str]) -> list[str]:
        lost = []
        for room_id in room_ids:
            key = self.key(room_id)
            holder = self.cache.get(key)
            if holder == self.owner:
                self.cache.touch(key, self.ttl)
            elif holder is None and self.cache.add(key, self.owner, self.ttl):
                continue  # expired meanwhile and nobody took it: still ours
            else:
                lost.append(room_id)
        return lost

    async def release(self, room_id: str) -> None:
        await asyncio.to_thread(self._release, self.key(room_id))

    def _release(self, key: str) -> None:
        if self.cache.get(key) == self.owner:
            self.cache.delete(key)
