"""Weak-link mode in the media broker: real aiortc clients through a Room over 127.0.0.1.

A participant in "low" mode receives each video as a low copy (at most 320x240, 15 fps,
~150 kbit/s) decoded and encoded once per publication; in "audio" mode no video at all.
Loopback as in test_media_broker.py: ``aioice.ice.get_host_addresses`` (the library) is
patched to offer exactly 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    VideoStreamTrack,
)
from aiortc.codecs.vpx import Vp8Encoder

from consults.media.forwarding import LowCopyVp8Encoder
from consults.media.lowcopy import LOW_BITRATE, FrameRateLimiter, low_size
from consults.media.room import Room
from tests.consults.media_clients import Client, until

pytestmark = pytest.mark.usefixtures("loopback_only")
SCENARIO_TIMEOUT = 120  # a hang guard, not an assertion about speed
FULL = (640, 480)


def waves(width: int, height: int, index: int) -> np.ndarray:
    """Frame ``index`` of crossing waves as a yuv420p image (the Y plane, then U and V):
    every pixel changes each frame, so an encoder spends the bitrate it is given (a flat
    picture would be small at any setting)."""
    across = 60 * np.sin((np.arange(width) + 7 * index) / 13)
    down = 60 * np.sin((np.arange(height * 3 // 2) - 5 * index) / 17)
    return (128 + across[None, :] + down[:, None]).astype(np.uint8)


class MovingWaves(VideoStreamTrack):
    """A 640x480 camera at 30 fps."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._count += 1
        frame = av.VideoFrame.from_ndarray(waves(*FULL, self._count), format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


class EncodingCamera(MediaStreamTrack):
    """A browser's camera and encoder: the waves above as VP8 at a steady 800 kbit/s (the
    aiortc client's own encoder follows the broker's bandwidth estimate, which moves), with
    a keyframe whenever a keyframe request (PLI) comes, as a browser does."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._camera = MovingWaves()
        self._codec = av.CodecContext.create("libvpx", "w")
        self._codec.width, self._codec.height = FULL
        self._codec.pix_fmt = "yuv420p"
        self._codec.time_base = fractions.Fraction(1, 90_000)
        self._codec.bit_rate = 800_000
        self._codec.options = {
            "deadline": "realtime",
            "lag-in-frames": "0",
            "cpu-used": "8",
            # constant bitrate, as aiortc's encoder (and a browser's) runs
            "minrate": "800000",
            "maxrate": "800000",
            "bufsize": "800000",
        }
        self._is_keyframe_wanted = False
        self._pending: list[av.Packet] = []

    def request_keyframe(self) -> None:
        self._is_keyframe_wanted = True

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._pending:
            frame = await self._camera.recv()
            if self._is_keyframe_wanted:
                frame.pict_type = av.video.frame.PictureType.I
                self._is_keyframe_wanted = False
            # in a thread, as aiortc's sender encodes: the event loop carries the call
            loop = asyncio.get_running_loop()
            self._pending = await loop.run_in_executor(None, self._codec.encode, frame)
        packet = self._pending.pop(0)
        packet.time_base = self._codec.time_base
        return packet


class Call:
    """A room and its clients; signaling delivered as separate tasks, as in real life."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

        async def on_signal(key: str, signal: dict[str, Any]) -> None:
            asyncio.ensure_future(self.clients[key].on_signal(signal))

        self.room = Room(ice_servers=[], on_signal=on_signal)

    def add(self, key: str, camera: MediaStreamTrack | None = None) -> Client:
        client = self.clients[key] = Client(self.room, key, camera)
        return client

    async def close(self) -> None:
        await self.room.close()
        for client in self.clients.values():
            await client.close()


async def frames_of_size(client: Client, count: int, fits: Callable[[int, int], bool]) -> None:
    """Wait until ``client`` has received ``count`` video frames in a row that fit."""
    start = len(client.sizes)

    def done() -> bool:
        recent = client.sizes[start:]
        streak = 0
        for width, height in reversed(recent):
            if not fits(width, height):
                break
            streak += 1
        return streak >= count

    await until(done)


def is_full(width: int, height: int) -> bool:
    return (width, height) == FULL


def is_low(width: int, height: int) -> bool:
    return width <= 320 and height <= 240


async def bytes_sent(call: Call, viewer: str, publisher: str) -> int:
    """Video bytes the broker has sent ``viewer`` of ``publisher`` (RTP payload)."""
    transceiver, _track = call.room.peers[viewer].subscriptions[(publisher, "video")]
    stats = await transceiver.sender.getStats()
    return next(s.bytesSent for s in stats.values() if s.type == "outbound-rtp")


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

    return asyncio.run(guarded())


def test_low_viewers_share_one_small_cheap_copy_while_another_viewer_sees_the_full_picture() -> (
    None
):
    async def scenario() -> dict[str, Any]:
        call = Call()
        call.add("publisher", EncodingCamera())
        normal, low, other_low = call.add("normal"), call.add("low"), call.add("other-low")
        try:
            for client in call.clients.values():
                await client.connect()
            for viewer in (normal, low, other_low):
                await frames_of_size(viewer, 10, is_full)

            call.room.peers["low"].set_link_mode("low")
            call.room.peers["other-low"].set_link_mode("low")
            await frames_of_size(low, 5, is_low)
            await frames_of_size(other_low, 5, is_low)
            source = call.room.peers["publisher"].publications["video"]
            copy = call.room.low_copies.of(source)
            assert copy is not None

            marks = {c.key: len(c.sizes) for c in (normal, low, other_low)}
            before = {key: await bytes_sent(call, key, "publisher") for key in ("normal", "low")}
            frames_before = (source.frames_forwarded, copy.frames_forwarded)
            # ~2 s of the publisher's video
            await until(lambda: source.frames_forwarded >= frames_before[0] + 60)
            after = {key: await bytes_sent(call, key, "publisher") for key in ("normal", "low")}
            frames_after = (source.frames_forwarded, copy.frames_forwarded)

            # A low viewer's keyframe request goes to the low copy's encoder.
            requests = copy.keyframes_requested
            receiver = low.video_receiver()
            ssrc = receiver.getSynchronizationSources()[0].source

            async def send_pli() -> None:
                await receiver._send_rtcp_pli(ssrc)
                await asyncio.sleep(0.1)

            await until(lambda: copy.keyframes_requested > requests, send_pli)
            # and each viewer goes on receiving (an aiortc client that lost a packet waits ~2 s)
            viewers = (normal, low, other_low)
            await until(lambda: all(len(c.sizes) >= marks[c.key] + 5 for c in viewers))
            return {
                "sizes": {key: call.clients[key].sizes[mark:] for key, mark in marks.items()},
                "sent": {key: after[key] - before[key] for key in before},
                "frames_in": frames_after[0] - frames_before[0],
                "frames_out": frames_after[1] - frames_before[1],
                "copies": len(call.room.low_copies),
                "copy_viewers": len(copy.subscribers),
                "target": copy.encoder.target_bitrate,
                "encoder_bit_rate": copy.encoder.codec.bit_rate,
            }
        finally:
            await call.close()

    result = run(scenario)
    sizes = result["sizes"]
    assert set(sizes["normal"]) == {FULL}
    # scaled to 320x240, the aspect ratio kept
    assert set(sizes["low"]) == {(320, 240)}
    assert set(sizes["other-low"]) == {(320, 240)}
    # at most 15 of the publisher's 30 frames a second
    # (give or take the few frames still queued for the low copy when the stretch began)
    assert 0 < result["frames_out"] <= result["frames_in"] / 2 + 5
    # over the same stretch of the call the low copy costs the link a fraction of the full
    # stream (150 kbit/s at 15 fps against 800 kbit/s at 30 fps)
    assert result["sent"]["low"] < 0.4 * result["sent"]["normal"]
    # two low viewers, one decoder and encoder
    assert result["copies"] == 1
    assert result["copy_viewers"] == 2
    assert result["target"] == LOW_BITRATE == 150_000
    assert result["encoder_bit_rate"] == 150_000


def test_audio_only_stops_video_but_not_sound_and_normal_brings_the_full_picture_back() -> None:
    async def scenario() -> dict[str, Any]:
        call = Call()
        call.add("publisher", EncodingCamera())
        viewer = call.add("viewer")
        peer = call.room.peers["viewer"]
        try:
            await call.clients["publisher"].connect()
            await viewer.connect()
            await frames_of_size(viewer, 10, is_full)
            peer.set_link_mode("low")
            await frames_of_size(viewer, 5, is_low)
            copies_while_low = len(call.room.low_copies)
            copy = call.room.low_copies.of(call.room.peers["publisher"].publications["video"])
            assert copy is not None

            peer.set_link_mode("audio")
            audio = viewer.frames["audio"]
            await until(lambda: viewer.frames["audio"] >= audio + 25)  # what was on its way
            video = viewer.frames["video"]
            audio = viewer.frames["audio"]
            await until(lambda: viewer.frames["audio"] >= audio + 100)  # ~2 s of 20 ms packets
            video_during_audio_only = viewer.frames["video"] - video
            copies_in_audio_mode = len(call.room.low_copies)
            await until(lambda: not copy.is_running)

            peer.set_link_mode("normal")
            await frames_of_size(viewer, 5, is_full)
            return {
                "copies_while_low": copies_while_low,
                "video_during_audio_only": video_during_audio_only,
                "copies_in_audio_mode": copies_in_audio_mode,
                "audio_track": peer.subscriptions[("publisher", "audio")][1].publication,
                "audio_publication": call.room.peers["publisher"].publications["audio"],
            }
        finally:
            await call.close()

    result = run(scenario)
    assert result["copies_while_low"] == 1
    assert result["video_during_audio_only"] == 0
    # the last low viewer left: the low copy stopped decoding and encoding
    assert result["copies_in_audio_mode"] == 0
    # audio was forwarded as published throughout
    assert result["audio_track"] is result["audio_publication"]


def test_the_link_mode_holds_for_someone_who_publishes_later_and_a_rejoin_starts_normal() -> None:
    async def scenario() -> dict[str, Any]:
        call = Call()
        viewer = call.add("viewer")
        # as the broker process does it: the mode is set right after the join, before the offer
        call.room.peers["viewer"].set_link_mode("low")
        try:
            await viewer.connect()
            publisher = call.add("publisher", EncodingCamera())
            await publisher.connect()
            await frames_of_size(viewer, 5, is_low)
            full_frames_seen = sum(is_full(*size) for size in viewer.sizes)
            copy = call.room.low_copies.of(call.room.peers["publisher"].publications["video"])
            assert copy is not None

            await call.room.leave("publisher")
            await until(lambda: not copy.is_running)
            copies_after_publisher_left = len(call.room.low_copies)

            rejoined = call.room.join("viewer")
            return {
                "full_frames_seen": full_frames_seen,
                "copies_after_publisher_left": copies_after_publisher_left,
                "mode_after_rejoin": rejoined.link_mode,
            }
        finally:
            await call.close()

    result = run(scenario)
    assert result["full_frames_seen"] == 0
    assert result["copies_after_publisher_left"] == 0
    assert result["mode_after_rejoin"] == "normal"


def test_three_viewers_who_join_one_after_another_all_see_the_publisher() -> None:
    # Each join renegotiates the others right away. aiortc's createOffer() renumbered the
    # codecs of a sender that had not started yet, which then sent VP8 under the RTX
    # payload type: that viewer never saw a picture (consults.media.forwarding
    # .create_offer_keeping_codecs).
    async def scenario() -> dict[str, int]:
        call = Call()
        call.add("publisher", MovingWaves())
        viewers = [call.add(key) for key in ("first", "second", "third")]
        try:
            for client in call.clients.values():
                await client.connect()
            await until(lambda: all(viewer.frames["video"] >= 15 for viewer in viewers))
            return {viewer.key: viewer.frames["video"] for viewer in viewers}
        finally:
            await call.close()

    frames = run(scenario)
    assert all(count >= 15 for count in frames.values())


def test_an_unknown_link_mode_is_refused() -> None:
    async def scenario() -> None:
        room = Room(ice_servers=[])
        peer = room.join("viewer")
        try:
            with pytest.raises(ValueError, match="unknown link mode"):
                peer.set_link_mode("high")
            assert peer.link_mode == "normal"
        finally:
            await room.close()

    run(scenario)


@pytest.mark.parametrize(
    ("size", "low"),
    [
        ((640, 480), (320, 240)),
        ((1280, 720), (320, 180)),
        ((1920, 1080), (320, 180)),
        ((480, 640), (180, 240)),  # a phone held upright
        ((1366, 768), (320, 180)),
        ((320, 240), (320, 240)),
        ((176, 144), (176, 144)),  # never scaled up
    ],
)
def test_the_low_copy_fits_320x240_keeping_the_aspect_ratio_in_even_sizes(
    size: tuple[int, int], low: tuple[int, int]
) -> None:
    assert low_size(*size) == low


def test_the_low_copy_keeps_at_most_15_frames_a_second() -> None:
    def kept(fps: float, seconds: int, start: int = 0) -> int:
        limiter = FrameRateLimiter(15)
        count = int(fps * seconds)
        return sum(limiter.keep((start + round(i * 90_000 / fps)) % 2**32) for i in range(count))

    assert kept(30, 10) == 150
    assert 145 <= kept(25, 10) <= 150
    assert 145 <= kept(24, 10) <= 150
    assert kept(10, 10) == 100  # slower sources keep every frame
    # RTP timestamps wrap at 2**32
    assert kept(30, 10, start=2**32 - 90_000) == 150


def test_the_low_copy_encoder_goes_below_aiortcs_bitrate_floor_and_stays_there() -> None:
    # why the broker has its own encoder class: aiortc's stops at 250 kbit/s
    aiortc_encoder = Vp8Encoder()
    aiortc_encoder.target_bitrate = 150_000
    assert aiortc_encoder.target_bitrate == 250_000

    encoder = LowCopyVp8Encoder()
    encoder.target_bitrate = 150_000
    encoded = []
    for index in range(150):  # 10 s at 15 fps
        frame = av.VideoFrame.from_ndarray(waves(320, 240, index), format="yuv420p")
        frame.pts, frame.time_base = index * 6000, fractions.Fraction(1, 90_000)
        payloads, _timestamp = encoder.encode(frame)
        encoded.extend(payloads)

    assert encoder.target_bitrate == 150_000
    assert encoder.codec is not None
    assert encoder.codec.bit_rate == 150_000
    assert len(encoded) == 150  # one whole VP8 frame each, not RTP payloads
    assert not encoded[0][0] & 0x01  # starting with a keyframe
    kbits_per_second = sum(len(frame) for frame in encoded) * 8 / 10 / 1000
    assert 100 < kbits_per_second < 200
