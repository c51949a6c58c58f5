"""The media broker: two real aiortc clients call each other through it over 127.0.0.1.

Loopback: aioice leaves 127.0.0.1 out of its host candidates and has no option for it, so
the ``loopback_only`` fixture patches ``aioice.ice.get_host_addresses`` (the library, not our
code) to offer exactly 127.0.0.1. ICE servers are an explicit empty list.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver
import av
import numpy as np
import pytest
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
from aiortc.rtp import RtpPacket
from channels.layers import InMemoryChannelLayer

from consults.media.forwarding import EagerJitterBuffer, SubscriberTrack, make_forwarding_receiver
from consults.media.room import Peer, Room
from consults.media.server import CONTROL_GROUP, MediaServer, session_group

SCENARIO_TIMEOUT = 15  # a hang guard, not an assertion about speed
FRAMES_WANTED = 15


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def decoders_created(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A spy on aiortc: the codec name of every decoder aiortc instantiates."""
    created: list[str] = []
    real = aiortc.rtcrtpreceiver.get_decoder

    def spy(codec: Any) -> Any:
        created.append(codec.name)
        return real(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", spy)
    return created


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


def make_room(clients: dict[str, Client]) -> Room:
    async def on_signal(key: str, signal: dict[str, Any]) -> None:
        # Signaling is asynchronous in real life: deliver it as a separate task.
        asyncio.ensure_future(clients[key].on_signal(signal))

    return Room(ice_servers=[], on_signal=on_signal)


async def until(
    condition: Callable[[], bool], step: Callable[[], Awaitable[None]] | None = None
) -> None:
    while not condition():
        if step is not None:
            await step()
        await asyncio.sleep(0.05)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

    return asyncio.run(guarded())


def test_two_participants_see_and_hear_each_other_and_the_broker_decodes_nothing(
    decoders_created: list[str],
) -> None:
    async def scenario() -> tuple[dict[str, int], dict[str, int], Room]:
        clients: dict[str, Client] = {}
        room = make_room(clients)
        clients["doctor"] = Client(room, "doctor", MovingPicture())
        clients["feldsher"] = Client(room, "feldsher", MovingPicture())
        try:
            await clients["doctor"].connect()
            await clients["feldsher"].connect()
            await until(
                lambda: all(
                    c.frames["video"] >= FRAMES_WANTED and c.frames["audio"] >= FRAMES_WANTED
                    for c in clients.values()
                )
            )
            forwarded = {
                key: {kind: p.frames_forwarded for kind, p in room.peers[key].publications.items()}
                for key in clients
            }
            return clients["doctor"].frames, forwarded, room
        finally:
            await room.close()
            for client in clients.values():
                await client.close()

    frames, forwarded, _room = run(scenario)
    assert frames["video"] >= FRAMES_WANTED
    assert frames["audio"] >= FRAMES_WANTED
    assert all(f["video"] > 0 and f["audio"] > 0 for f in forwarded.values())
    # Each client decodes the other's audio and video: 4 decoders. Any decoder in the
    # broker would make more.
    assert sorted(decoders_created) == ["VP8", "VP8", "opus", "opus"]


def test_video_arrives_bit_identical_to_what_the_publisher_encoded() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        clients: dict[str, Client] = {}
        room = make_room(clients)
        camera = PreEncodedVp8()
        clients["publisher"] = Client(room, "publisher", camera)
        clients["viewer"] = Client(room, "viewer", MovingPicture(), capture_encoded=True)
        try:
            await clients["publisher"].connect()
            await clients["viewer"].connect()
            await until(lambda: len(clients["viewer"].encoded) >= FRAMES_WANTED)
            return list(camera.sent), list(clients["viewer"].encoded)
        finally:
            await room.close()
            for client in clients.values():
                await client.close()

    sent, received = run(scenario)
    sent_set = set(sent)
    assert len(received) >= FRAMES_WANTED
    assert all(frame in sent_set for frame in received)
    # The viewer starts on a keyframe (VP8: bit 0 of the first byte is 0).
    assert not received[0][0] & 0x01


def test_a_viewers_keyframe_request_reaches_the_publishers_encoder() -> None:
    async def scenario() -> int:
        clients: dict[str, Client] = {}
        room = make_room(clients)
        clients["publisher"] = Client(room, "publisher", MovingPicture())
        clients["viewer"] = Client(room, "viewer", MovingPicture())
        publisher_sender = clients["publisher"].video_sender
        assert publisher_sender is not None
        requests: list[bool] = []
        real = publisher_sender._send_keyframe

        def spy() -> None:  # a spy on aiortc's sender: the encoder is asked for a keyframe
            requests.append(True)
            real()

        publisher_sender._send_keyframe = spy  # type: ignore[method-assign]
        try:
            await clients["publisher"].connect()
            await clients["viewer"].connect()
            viewer = clients["viewer"]
            await until(lambda: viewer.frames["video"] >= FRAMES_WANTED)
            before = len(requests)
            receiver = viewer.remote_video_receivers[0]
            ssrc = receiver.getSynchronizationSources()[0].source

            async def viewer_sends_pli() -> None:
                await receiver._send_rtcp_pli(ssrc)
                await asyncio.sleep(0.1)

            await until(lambda: len(requests) > before, viewer_sends_pli)
            return len(requests) - before
        finally:
            await room.close()
            for client in clients.values():
                await client.close()

    assert run(scenario) >= 1


def test_a_participant_without_a_camera_hears_and_sees_the_other() -> None:
    async def scenario() -> tuple[dict[str, int], dict[str, int]]:
        clients: dict[str, Client] = {}
        room = make_room(clients)
        clients["doctor"] = Client(room, "doctor", MovingPicture())
        clients["patient"] = Client(room, "patient", None)  # camera refused: audio only
        try:
            await clients["patient"].connect()
            await clients["doctor"].connect()
            await until(
                lambda: (
                    clients["patient"].frames["video"] >= FRAMES_WANTED
                    and clients["doctor"].frames["audio"] >= FRAMES_WANTED
                )
            )
            return dict(clients["patient"].frames), dict(clients["doctor"].frames)
        finally:
            await room.close()
            for client in clients.values():
                await client.close()

    patient, doctor = run(scenario)
    assert patient["video"] >= FRAMES_WANTED
    assert patient["audio"] >= FRAMES_WANTED
    assert doctor["audio"] >= FRAMES_WANTED
    assert doctor["video"] == 0


def test_a_participant_who_leaves_stops_being_forwarded() -> None:
    async def scenario() -> tuple[set[str], dict[str, Any]]:
        clients: dict[str, Client] = {}
        room = make_room(clients)
        clients["doctor"] = Client(room, "doctor", MovingPicture())
        clients["patient"] = Client(room, "patient", MovingPicture())
        try:
            await clients["doctor"].connect()
            await clients["patient"].connect()
            await until(lambda: clients["doctor"].frames["video"] >= FRAMES_WANTED)
            await room.leave("patient")
            doctor = room.peers["doctor"]
            return set(room.peers), dict(doctor.subscriptions)
        finally:
            await room.close()
            for client in clients.values():
                await client.close()

    peers, subscriptions = run(scenario)
    assert peers == {"doctor"}
    assert subscriptions == {}


def test_the_broker_process_takes_its_instructions_from_the_channel_layer() -> None:
    async def scenario() -> tuple[dict[str, int], list[dict[str, Any]], dict[str, Room]]:
        layer = InMemoryChannelLayer()
        server = MediaServer(layer, ice_servers=[])
        serving = asyncio.ensure_future(server.run())
        web = ChannelSignaling(layer, appointment_id=7)
        await web.start()
        await until(lambda: server.channel_name is not None)
        for key in ("specialist", "feldsher"):
            web.clients[key] = Client(None, key, MovingPicture(), signaling=web)
        try:
            for client in web.clients.values():
                await client.connect()
            await until(
                lambda: all(c.frames["video"] >= FRAMES_WANTED for c in web.clients.values())
            )
            frames = dict(web.clients["feldsher"].frames)
            await web.send("feldsher", {"type": "leave"})
            await web.send("specialist", {"type": "leave"})
            await web.send("specialist", {"type": "dance"})
            await until(lambda: len(web.errors) >= 1)
            await until(lambda: not server.rooms.get("7") or not server.rooms["7"].peers)
            return frames, list(web.errors), dict(server.rooms)
        finally:
            await shut_down(web, [server], [serving])

    frames, errors, rooms = run(scenario)
    assert frames["video"] >= FRAMES_WANTED
    assert frames["audio"] >= FRAMES_WANTED
    assert errors == [{"type": "error", "code": "unknown", "message": "unknown signal 'dance'"}]
    assert "7" not in rooms or not rooms["7"].peers


def rtp(sequence_number: int, timestamp: int, data: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(sequence_number=sequence_number, timestamp=timestamp, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]  # what aiortc's depayload leaves
    return packet


def test_a_complete_video_frame_is_forwarded_without_waiting_for_the_next_one() -> None:
    # aiortc's own buffer releases a frame only when the next frame's first packet arrives.
    buffer = EagerJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(rtp(100, 3000, b"ab"))[1] is None
    frame = buffer.add(rtp(101, 3000, b"cd", marker=True))[1]
    assert frame is not None
    assert (frame.data, frame.timestamp) == (b"abcd", 3000)
    # a frame whose first packet is late waits for it, then goes at once
    assert buffer.add(rtp(103, 6000, b"gh", marker=True))[1] is None
    frame = buffer.add(rtp(102, 6000, b"ef"))[1]
    assert frame is not None
    assert frame.data == b"efgh"


def test_audio_packets_are_forwarded_one_by_one_even_across_a_loss() -> None:
    buffer = EagerJitterBuffer(capacity=16, is_video=False)
    released = [buffer.add(rtp(seq, seq * 960, bytes([seq])))[1] for seq in (10, 11, 13)]
    assert [f.data if f else None for f in released] == [b"\x0a", b"\x0b", b"\x0d"]
    # the lost packet turning up late is too late: the viewer already played past it
    assert buffer.add(rtp(12, 12 * 960, b"\x0c"))[1] is None


def vp8(
    sequence_number: int, timestamp: int, *, first: bool, keyframe: bool = False, marker: bool
) -> RtpPacket:
    """A VP8 packet as received: payload descriptor (S bit on a frame's first packet), and
    the depayloaded data whose first byte says keyframe (bit 0 clear) or not."""
    data = bytes([0x00 if keyframe else 0x01]) + b"vp8"
    packet = rtp(sequence_number, timestamp, data, marker=marker)
    packet.payload = bytes([0x10 if first else 0x00]) + data
    return packet


def test_a_keyframe_after_a_lost_packet_is_forwarded_without_waiting_for_the_loss() -> None:
    buffer = EagerJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(vp8(1, 3000, first=True, keyframe=True, marker=True))[1] is not None
    # packet 2 (a delta frame's start) is lost; 3 and 4 end that frame and the next
    assert buffer.add(vp8(3, 6000, first=False, marker=True))[1] is None
    assert buffer.add(vp8(4, 9000, first=True, marker=True))[1] is None
    # a complete keyframe makes the frames before it useless: it goes at once
    assert buffer.add(vp8(5, 12000, first=True, keyframe=True, marker=False))[1] is None
    pli, frame = buffer.add(vp8(6, 12000, first=False, keyframe=True, marker=True))
    assert frame is not None
    assert frame.timestamp == 12000
    # and what follows flows again
    assert buffer.add(vp8(7, 15000, first=True, marker=True))[1].timestamp == 15000


def test_a_loss_past_the_retransmission_window_asks_the_publisher_for_a_keyframe() -> None:
    buffer = EagerJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(vp8(1, 0, first=True, keyframe=True, marker=True))[1] is not None
    # packet 2 never comes; one delta frame per packet follows
    asked = [buffer.add(vp8(seq, seq * 3000, first=True, marker=True))[0] for seq in range(3, 200)]
    # once, as the gap falls out of the window (then again every 2 s while it lasts)
    assert asked.count(True) == 1
    assert asked.index(True) == 2 + 128 - 3  # the first packet 128 behind the gap
    # the keyframe the publisher then sends restarts the picture
    frame = buffer.add(vp8(200, 200 * 3000, first=True, keyframe=True, marker=True))[1]
    assert frame is not None
    assert frame.timestamp == 200 * 3000


def test_a_participant_who_reconnects_is_seen_again() -> None:
    async def scenario() -> tuple[int, int, int]:
        clients: dict[str, Client] = {}
        room = make_room(clients)
        clients["doctor"] = Client(room, "doctor", MovingPicture())
        clients["patient"] = Client(room, "patient", MovingPicture())
        first_patient = clients["patient"]
        try:
            await clients["doctor"].connect()
            await first_patient.connect()
            doctor = clients["doctor"]
            await until(lambda: doctor.frames["video"] >= FRAMES_WANTED)
            # The phone switches networks: a new RTCPeerConnection under the same key.
            await first_patient.close()
            before = doctor.frames["video"]
            clients["patient"] = Client(room, "patient", MovingPicture())
            await clients["patient"].connect()
            await until(
                lambda: (
                    doctor.frames["video"] >= before + FRAMES_WANTED
                    and clients["patient"].frames["video"] >= FRAMES_WANTED
                )
            )
            return (
                len(room.peers),
                len(room.peers["doctor"].pc.getTransceivers()),
                max(doctor.max_pts.values()),
            )
        finally:
            await room.close()
            for client in [*clients.values(), first_patient]:
                await client.close()

    peers, doctor_transceivers, doctor_max_pts = run(scenario)
    assert peers == 2
    # the doctor's own audio and video, and the patient's: the senders of the first
    # connection carry the second one's media (a phone may reconnect many times)
    assert doctor_transceivers == 4
    # and the RTP timestamps went on forward: aiortc's receiver takes a step back for a
    # 32-bit wrap and its timestamps would leap past 2**32 (a browser would drop frames)
    assert doctor_max_pts < 2**31


def test_broker_offer_keeps_the_header_extension_ids_the_browser_chose():
    # Chrome refuses a renegotiation offer that renumbers RTP header extensions ("RTP
    # extension ID reassignment not supported"); aiortc's createOffer renumbers them.
    from consults.media.forwarding import align_header_extension_ids

    browser_offer = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    )
    aiortc_offer = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
        "a=extmap:5 urn:example:new-extension\r\n"
    )

    aligned = align_header_extension_ids(aiortc_offer, browser_offer)

    assert "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" in aligned
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" in aligned
    assert "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n" in aligned
    assert "a=extmap:3 urn:example:new-extension\r\n" in aligned
    assert aligned.count("a=extmap:4 ") == 2


def test_broker_offer_keeps_the_payload_types_the_browser_chose():
    # After an offer that renumbered VP8 (aiortc: 97) the browser sent VP8 as 97, which the
    # broker still read as RTX (the browser's 97) and dropped: one frame, then nothing.
    from consults.media.forwarding import align_payload_types

    browser_offer = (
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
        "a=rtpmap:96 VP8/90000\r\n"
        "a=rtcp-fb:96 nack pli\r\n"
        "a=rtpmap:97 rtx/90000\r\n"
        "a=fmtp:97 apt=96\r\n"
    )
    aiortc_offer = (
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98\r\n"
        "a=rtpmap:97 VP8/90000\r\n"
        "a=rtcp-fb:97 nack pli\r\n"
        "a=rtpmap:98 rtx/90000\r\n"
        "a=fmtp:98 apt=97\r\n"
    )

    aligned = align_payload_types(aiortc_offer, browser_offer)

    assert aligned.startswith("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n")
    assert "a=rtpmap:96 VP8/90000\r\n" in aligned
    assert "a=rtcp-fb:96 nack pli\r\n" in aligned
    assert "a=rtpmap:97 rtx/90000\r\n" in aligned
    assert "a=fmtp:97 apt=96" in aligned
