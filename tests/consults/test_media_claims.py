"""Several media brokers for one site: each room is served by exactly one of them, and a room
whose broker is gone is taken over by another when its participants reconnect.

Two real MediaServer instances share one channel layer (both hear every signal, as brokers
listening on `media.rooms` do) and one cache (Django's local-memory cache here; Redis in
production); two aiortc clients call each other through whichever broker claims the room."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.core.cache.backends.locmem import LocMemCache

from consults.media.claims import RoomClaims
from consults.media.server import MediaServer
from tests.consults.media_clients import (
    FRAMES_WANTED,
    ChannelSignaling,
    Client,
    MovingPicture,
    shut_down,
    until,
)

pytestmark = pytest.mark.usefixtures("loopback_only")
ROOM = "7"


def shared_cache(name: str) -> LocMemCache:
    return LocMemCache(name, {})


async def start(servers: list[MediaServer]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.ensure_future(server.run()) for server in servers]
    await until(lambda: all(server.channel_name for server in servers))
    return tasks


async def call(web: ChannelSignaling) -> dict[str, Client]:
    """Two participants with fresh connections (as browsers after a reload or a failure)."""
    for client in web.clients.values():
        await client.close()
    web.clients = {key: Client(None, key, MovingPicture(), signaling=web) for key in ("a", "b")}
    for client in web.clients.values():
        await client.connect()
    await until(lambda: all(c.frames["video"] >= FRAMES_WANTED for c in web.clients.values()))
    return web.clients


def serving(servers: list[MediaServer]) -> list[str]:
    return [server.claims.owner for server in servers if server.rooms.get(ROOM)]


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), 60))


def test_one_broker_serves_a_room_and_another_takes_over_when_it_stops():
    async def scenario() -> dict[str, Any]:
        layer, cache = InMemoryChannelLayer(), shared_cache("one-broker")
        servers = [
            MediaServer(layer, ice_servers=[], claims=RoomClaims(cache, owner=name))
            for name in ("broker-1", "broker-2")
        ]
        tasks = await start(servers)
        web = ChannelSignaling(layer, appointment_id=int(ROOM))
        await web.start()
        try:
            await call(web)
            first = serving(servers)
            holder = cache.get(RoomClaims.key(ROOM))
            # The serving broker stops (a deploy); the browsers open new connections.
            owner = next(s for s in servers if s.claims.owner == first[0])
            owner.stop()
            await tasks[servers.index(owner)]
            await call(web)
            return {
                "first": first,
                "holder": holder,
                "then": serving(servers),
                "errors": list(web.errors),
            }
        finally:
            await shut_down(web, servers, tasks)

    seen = run(scenario)

    assert len(seen["first"]) == 1
    assert seen["holder"] == seen["first"][0]
    assert seen["then"] == [n for n in ("broker-1", "broker-2") if n != seen["first"][0]]
    assert seen["errors"] == []


def test_a_room_claimed_by_a_dead_broker_is_served_once_the_claim_expires():
    async def scenario() -> dict[str, Any]:
        layer, cache = InMemoryChannelLayer(), shared_cache("dead-broker")
        # A broker that died holding the room: its claim lives one more second.
        cache.add(RoomClaims.key(ROOM), "dead-broker", 1)
        server = MediaServer(layer, ice_servers=[], claims=RoomClaims(cache, owner="alive"))
        tasks = await start([server])
        web = ChannelSignaling(layer, appointment_id=int(ROOM))
        await web.start()
        try:
            client = Client(None, "a", MovingPicture(), signaling=web)
            web.clients = {"a": client}
            await client.pc.setLocalDescription(await client.pc.createOffer())
            web.answers["a"] = asyncio.get_running_loop().create_future()
            await web.send("a", {"type": "offer", "sdp": client.pc.localDescription.sdp})
            await asyncio.sleep(0.5)
            ignored = not web.answers["a"].done() and not server.rooms
            await asyncio.sleep(1)  # the dead broker's claim expires
            await call(web)  # the browsers try again with new connections
            return {"ignored": ignored, "holder": cache.get(RoomClaims.key(ROOM))}
        finally:
            await shut_down(web, [server], tasks)

    seen = run(scenario)

    assert seen["ignored"]
    assert seen["holder"] == "alive"
