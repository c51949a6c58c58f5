"""The channel layer keeps idle receivers alive (the media broker waits for calls for hours)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings


@pytest.mark.skipif(not settings.REDIS_URL, reason="the in-process layer has no read timeout")
def test_an_idle_receiver_outlasts_redis_read_timeout():
    async def idle_then_receive() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(6)  # longer than channels_redis's 5 s blocking pop
        assert not waiting.done() or waiting.exception() is None
        await layer.send(channel, {"type": "call.offer"})
        return await asyncio.wait_for(waiting, timeout=10)

    assert asyncio.run(idle_then_receive()) == {"type": "call.offer"}


@pytest.mark.skipif(not settings.REDIS_URL, reason="the in-process layer has nothing to cancel")
def test_a_cancelled_receive_ends_whenever_the_cancel_arrives():
    """A closed WebSocket cancels its consumer's receive; a receive that survives the cancel
    keeps the consumer (and a Redis connection) forever, and hangs the server's shutdown.

    The cancel is sent after 0, 1, 2, ... turns of the event loop, so that it lands on every
    step of a receive (connecting, cleaning the backup queue, sending the blocking pop)."""

    async def cancel_after(turns: int) -> bool:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        for _ in range(turns):
            await asyncio.sleep(0)
        waiting.cancel()
        done, _ = await asyncio.wait([waiting], timeout=3)
        return bool(done)

    async def every_step() -> list[int]:
        return [turns for turns in range(40) if not await cancel_after(turns)]

    assert asyncio.run(every_step()) == []
