"""The media broker: two real aiortc clients call each other through it over 127.0.0.1.

Loopback: aioice leaves 127.0.0.1 out of its host candidates and has no option for it, so
the ``loopback_only`` fixture (conftest.py) patches ``aioice.ice.get_host_addresses`` (the
library, not our code) to offer exactly 127.0.0.1. ICE servers are an explicit empty list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiortc.rtp import RtpPacket
from channels.layers import InMemoryChannelLayer

from consults.media.forwarding import EagerJitterBuffer
from consults.media.room import Room
from consults.media.server import MediaServer
from tests.consults.media_clients import (
    FRAMES_WANTED,
    ChannelSignaling,
    Client,
    MovingPicture,
    PreEncodedVp8,
    shut_down,
    until,
)

pytestmark = pytest.mark.usefixtures("loopback_only")
SCENARIO_TIMEOUT = 15  # a hang guard, not an assertion about speed


def make_room(clients: dict[str, Client]) -> Room:
    async def on_signal(key: str, signal: dict[str, Any]) -> None:
        # Signaling is asynchronous in real life: deliver it as a separate task.
        asyncio.ensure_future(clients[key].on_signal(signal))

    return Room(ice_servers=[], on_signal=on_signal)


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
