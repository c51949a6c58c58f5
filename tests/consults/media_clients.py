"""Participants' browsers played by aiortc, and the web process's side of the media
signaling played over a channel layer, for tests of the media broker."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from channels.layers import InMemoryChannelLayer

from consults.media.forwarding import SubscriberTrack, make_forwarding_receiver
from consults.media.room import Peer, Room
from consults.media.server import CONTROL_GROUP, MediaServer, session_group

FRAMES_WANTED = 15


class MovingPicture(VideoStreamTrack):
    """320x240 synthetic camera: a bar that moves, so every frame differs."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.full((240, 320, 3), 40, dtype=np.uint8)
        x = (pts // 3000) % 300
        image[:, x : x + 20] = (200, 60, 60)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


class PreEncodedVp8(MediaStreamTrack):
    """A camera whose frames are already VP8: records the exact bytes it sends."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self._codec = av.CodecContext.create("libvpx", "w")
        self._codec.width, self._codec.height = 320, 240
        self._codec.pix_fmt = "yuv420p"
        self._codec.bit_rate = 300_000
        self._codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
        self._picture = MovingPicture()
        self._pending: list[av.Packet] = []

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._pending:
            frame = await self._picture.recv()
            frame = frame.reformat(format="yuv420p")
            self._pending = list(self._codec.encode(frame))
        packet = self._pending.pop(0)
        packet.time_base = fractions.Fraction(1, 90000)
        self.sent.append(bytes(packet))
        return packet


class Client:
    """A participant's browser, played by aiortc."""

    def __init__(
        self,
        room: Room | None,
        key: str,
        video: MediaStreamTrack | None,
        capture_encoded: bool = False,
        signaling: ChannelSignaling | None = None,
    ) -> None:
        self.key = key
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = video
        self.pc.addTrack(AudioStreamTrack())
        self.video_sender = self.pc.addTrack(video) if video is not None else None
        if self.video_sender is not None and hasattr(video, "request_keyframe"):
            # A camera that encodes itself (test_media_lowcopy's EncodingCamera): aiortc's
            # sender answers a PLI by asking its own encoder, so ask the camera instead.
            self.video_sender._send_keyframe = video.request_keyframe  # type: ignore[method-assign]
        self.peer: Peer | None = room.join(key) if room is not None else None
        self.signaling = signaling
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.max_pts: dict[str, int] = {"audio": 0, "video": 0}
        self.sizes: list[tuple[int, int]] = []  # of each video frame received, in order
        self.encoded: list[bytes] = []
        self.capture_encoded = capture_encoded
        self.remote_video_receivers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if not self.capture_encoded:
                self._tasks.append(asyncio.ensure_future(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames[track.kind] += 1
                self.max_pts[track.kind] = max(self.max_pts[track.kind], frame.pts or 0)
                if track.kind == "video":
                    self.sizes.append((frame.width, frame.height))
        except MediaStreamError:
            pass

    async def _collect(self, track: SubscriberTrack) -> None:
        try:
            while True:
                packet = await track.recv()
                self.encoded.append(bytes(packet))
        except MediaStreamError:
            pass

    async def connect(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        if self.signaling is not None:
            answer = await self.signaling.offer(self.key, self.pc.localDescription.sdp)
        else:
            assert self.peer is not None
            answer = await self.peer.handle_offer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def on_signal(self, signal: dict[str, Any]) -> None:
        assert signal["type"] == "offer"
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=signal["sdp"], type="offer"))
        if self.capture_encoded:
            # Read what arrives without decoding, to compare it byte for byte.
            for transceiver in self.pc.getTransceivers():
                if self._is_new_remote_video(transceiver):
                    publication = make_forwarding_receiver(transceiver.receiver)
                    self.remote_video_receivers.append(transceiver.receiver)
                    track = publication.subscribe()
                    self._tasks.append(asyncio.ensure_future(self._collect(track)))
        else:
            for transceiver in self.pc.getTransceivers():
                if self._is_new_remote_video(transceiver):
                    self.remote_video_receivers.append(transceiver.receiver)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        if self.signaling is not None:
            await self.signaling.answer(self.key, self.pc.localDescription.sdp)
        else:
            assert self.peer is not None
            await self.peer.handle_answer(self.pc.localDescription.sdp)

    def video_receiver(self) -> Any:
        """The receiver of the first video that comes from the broker."""
        return next(
            t.receiver
            for t in self.pc.getTransceivers()
            if t.kind == "video" and t.receiver.track is not None and t.direction != "sendrecv"
        )

    def _is_new_remote_video(self, transceiver: RTCRtpTransceiver) -> bool:
        return (
            transceiver.kind == "video"
            and transceiver.receiver.track is not None
            and transceiver.receiver not in self.remote_video_receivers
        )

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


class ChannelSignaling:
    """Plays the web process: relays signals over the channel layer, as the consumer does."""

    def __init__(self, layer: InMemoryChannelLayer, appointment_id: int) -> None:
        self.layer = layer
        self.appointment_id = appointment_id
        self.clients: dict[str, Client] = {}
        self.answers: dict[str, asyncio.Future[str]] = {}
        self.errors: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        channel = await self.layer.new_channel()
        await self.layer.group_add(session_group(self.appointment_id), channel)
        self._task = asyncio.ensure_future(self._replies(channel))

    async def _replies(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            assert message["type"] == "media.reply"
            key, signal = message["participant_key"], message["signal"]
            if signal["type"] == "answer":
                self.answers.pop(key).set_result(signal["sdp"])
            elif signal["type"] == "offer":
                asyncio.ensure_future(self.clients[key].on_signal(signal))
            else:
                self.errors.append(signal)

    async def send(self, key: str, signal: dict[str, Any]) -> None:
        await self.layer.group_send(
            CONTROL_GROUP,
            {
                "type": "media.signal",
                "appointment_id": self.appointment_id,
                "participant_key": key,
                "signal": signal,
            },
        )

    async def offer(self, key: str, sdp: str) -> str:
        self.answers[key] = asyncio.get_running_loop().create_future()
        await self.send(key, {"type": "offer", "sdp": sdp})
        return await self.answers[key]

    async def answer(self, key: str, sdp: str) -> None:
        await self.send(key, {"type": "answer", "sdp": sdp})

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def shut_down(
    web: ChannelSignaling, servers: list[MediaServer], serving: list[asyncio.Future[None]]
) -> None:
    """The end of a broker scenario: the web side, then the brokers, then the clients."""
    web.stop()
    for server in servers:
        server.stop()
    await asyncio.gather(*serving)
    for client in web.clients.values():
        await client.close()


async def until(
    condition: Callable[[], bool], step: Callable[[], Awaitable[None]] | None = None
) -> None:
    while not condition():
        if step is not None:
            await step()
        await asyncio.sleep(0.05)
