"""The broker records: two real aiortc clients in a room over 127.0.0.1, a "record" message on
the channel layer, and per-participant Matroska files holding the very packets they sent."""

from __future__ import annotations

import asyncio
import fractions
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from channels.layers import InMemoryChannelLayer

from consults.media.recorder import MANIFEST, RESYNC_SECONDS
from consults.media.server import MediaServer
from tests.consults.media_clients import (
    ChannelSignaling,
    Client,
    MovingPicture,
    PreEncodedVp8,
    shut_down,
    until,
)

pytestmark = pytest.mark.usefixtures("loopback_only")
APPOINTMENT = 7
# A hang guard, not a speed assertion: generous, as a loaded 2-core machine may need it.
SCENARIO_TIMEOUT = 60
RECORDING = 42


class TimedVp8(PreEncodedVp8):
    """PreEncodedVp8 with its RTP clock at 90 kHz, as a browser's (the recorder places
    packets by their RTP timestamps)."""

    def __init__(self) -> None:
        super().__init__()
        self._codec.time_base = fractions.Fraction(1, 90000)
        # It ignores keyframe requests (aiortc cannot force a pre-encoded track): a keyframe
        # every second, so that the recording starts soon.
        self._codec.gop_size = 30


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

    return asyncio.run(guarded())


def demuxed(path: Path) -> tuple[str, list[bytes], list[float]]:
    """The codec of a file's one stream, its packets' bytes and their times (seconds)."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        packets = [p for p in container.demux(stream) if p.size]
        return (
            stream.codec_context.name,
            [bytes(p) for p in packets],
            [float(p.pts * p.time_base) for p in packets],
        )


def test_the_broker_records_each_participants_packets_without_decoding(
    tmp_path: Path,
    decoders_created: list[str],
) -> None:
    done: list[tuple[int, dict[str, Any]]] = []

    async def on_done(recording_id: int, manifest: dict[str, Any]) -> None:
        done.append((recording_id, manifest))

    camera = TimedVp8()

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        server = MediaServer(layer, ice_servers=[], on_recording_done=on_done)
        serving = asyncio.ensure_future(server.run())
        web = ChannelSignaling(layer, appointment_id=APPOINTMENT)
        await web.start()
        await until(lambda: server.channel_name is not None)
        web.clients["specialist"] = Client(None, "specialist", camera, signaling=web)
        web.clients["user:5"] = Client(None, "user:5", MovingPicture(), signaling=web)
        try:
            for client in web.clients.values():
                await client.connect()
            await until(lambda: all(c.frames["video"] >= 5 for c in web.clients.values()))
            directory = tmp_path / str(RECORDING)
            start = {"type": "record", "action": "start", "recording_id": RECORDING}
            await web.send("specialist", {**start, "directory": str(directory)})
            await until(lambda: "7" in server.recorders)
            recorder = server.recorders["7"]
            # A few seconds of media: 40 video frames of each participant (this camera's
            # video is recorded from its next own keyframe).
            await until(
                lambda: (
                    len(recorder.segments) == 4
                    and all(s.packets >= 40 for s in recorder.segments if s.kind == "video")
                )
            )
            await web.send(
                "specialist", {"type": "record", "action": "stop", "recording_id": RECORDING}
            )
            await until(lambda: bool(done))
        finally:
            await shut_down(web, [server], [serving])

    run(scenario)

    recording_id, manifest = done[0]
    assert recording_id == RECORDING
    directory = tmp_path / str(RECORDING)
    assert json.loads((directory / MANIFEST).read_text()) == manifest
    segments = {(s["participant_key"], s["kind"]): s for s in manifest["segments"]}
    assert set(segments) == {
        ("specialist", "audio"), ("specialist", "video"), ("user:5", "audio"), ("user:5", "video")
    }  # fmt: skip
    for (_key, kind), segment in segments.items():
        codec, packets, times = demuxed(directory / segment["file"])
        assert codec == {"audio": "opus", "video": "vp8"}[kind]
        assert len(packets) == segment["packets"] > 10
        # Timestamps from the RTP clock, counted from the recording's start, increasing.
        assert times == sorted(times)
        assert 0 <= times[0] < manifest["duration"]
        # Packets keep their RTP distance from the segment's first one, which is placed at
        # its arrival: a first packet delayed (a busy machine) puts the rest up to
        # RESYNC_SECONDS after their own arrival, and no further.
        assert times[-1] <= manifest["duration"] + RESYNC_SECONDS
    # The specialist's video in the file is exactly what their encoder produced: a run of
    # consecutive frames starting at a keyframe, byte for byte.
    _codec, recorded, _times = demuxed(directory / segments[("specialist", "video")]["file"])
    first = camera.sent.index(recorded[0])
    assert recorded == camera.sent[first : first + len(recorded)]
    assert not recorded[0][0] & 0x01  # a VP8 keyframe
    # The broker decoded nothing: only the two clients' decoders (audio and video each).
    assert sorted(decoders_created) == ["VP8", "VP8", "opus", "opus"]


def test_a_recording_stops_when_the_room_empties(tmp_path: Path) -> None:
    done: list[int] = []

    async def on_done(recording_id: int, manifest: dict[str, Any]) -> None:
        done.append(recording_id)

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        server = MediaServer(
            layer, ice_servers=[], recording_dir=tmp_path, on_recording_done=on_done
        )
        serving = asyncio.ensure_future(server.run())
        web = ChannelSignaling(layer, appointment_id=APPOINTMENT)
        await web.start()
        await until(lambda: server.channel_name is not None)
        web.clients["specialist"] = Client(None, "specialist", MovingPicture(), signaling=web)
        try:
            await web.send("specialist", {"type": "record", "action": "start", "recording_id": 3})
            await web.clients["specialist"].connect()
            await until(lambda: "7" in server.recorders and server.recorders["7"].segments)
            await web.send("specialist", {"type": "leave"})
            await until(lambda: bool(done))
        finally:
            await shut_down(web, [server], [serving])

    run(scenario)
    assert done == [3]
    manifest = json.loads((tmp_path / "3" / MANIFEST).read_text())
    assert {s["kind"] for s in manifest["segments"]} <= {"audio", "video"}
    assert manifest["segments"]
