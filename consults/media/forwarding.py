"""Forward encoded media through aiortc without decoding it.

Written for aiortc 1.16.0 exactly (requirements.txt pins it). This is the ONLY module of
the project that touches aiortc internals; any aiortc upgrade must re-read
aiortc/rtcrtpreceiver.py, aiortc/jitterbuffer.py, aiortc/rtcrtpsender.py and
aiortc/codecs/vpx.py and run tests/consults/test_media_broker*.py and
tests/consults/test_media_lowcopy.py.

How it works:

- Receive side: ``RTCRtpReceiver.receive()`` normally starts a decoder thread and
  ``_handle_rtp_packet`` puts each reassembled frame, ``(codec, JitterFrame)``, on that
  thread's queue. :func:`make_forwarding_receiver` swaps the receiver's class for
  :class:`_ForwardingReceiver`, whose ``receive()`` starts no thread and installs a
  :class:`_FrameSink` in place of the decoder queue. The sink turns each frame into an
  ``av.Packet`` (pts in RTP clock units, time_base 1/clock rate, keyframe flag) and hands
  it to a :class:`Publication`, which copies it to every subscriber's queue. No decoder is
  ever created.
- The jitter buffer is replaced by :class:`EagerJitterBuffer`, which releases a video
  frame as soon as its marker-bit packet arrives and every packet of the frame is there
  (aiortc waits for the next frame's first packet, one frame interval later), and each
  audio packet at once (the viewer's own jitter buffer absorbs jitter).
- Send side: :class:`SubscriberTrack.recv` returns ``av.Packet`` objects, so
  ``RTCRtpSender`` only packetizes them. A PLI/FIR from the viewer calls the sender's
  ``_send_keyframe``; :func:`attach_subscriber` points it at the publisher's receiver,
  which sends a PLI to the publisher (at most one every ``PLI_MIN_INTERVAL`` seconds).
- A viewer's video starts at a keyframe (a PLI is sent when it subscribes); a viewer whose
  sender falls behind (``SUBSCRIBER_QUEUE_LIMIT``) is flushed and restarts at a keyframe.
  A SubscriberTrack can be re-attached to another publication (a participant who
  reconnects) with its RTP timestamps kept moving forward.
- The one place the broker encodes, the weak-link low copy (consults/media/lowcopy.py), uses
  :class:`LowCopyVp8Encoder`: aiortc's VP8 encoder with its bitrate floor lowered.
- Importing this module fails on any other aiortc version.
"""

from __future__ import annotations

import asyncio
import fractions
import re
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.vpx import MAX_BITRATE, Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.utils import uint16_add

AIORTC_VERSION = "1.16.0"
PLI_MIN_INTERVAL = 0.3
SUBSCRIBER_QUEUE_LIMIT = 120


def _check_version() -> None:
    import aiortc

    if aiortc.__version__ != AIORTC_VERSION:  # pragma: no cover - guard for upgrades
        raise ImportError(
            f"consults.media.forwarding is written for aiortc {AIORTC_VERSION}, "
            f"found {aiortc.__version__}"
        )


_check_version()


def is_vp8_keyframe(data: bytes) -> bool:
    """A VP8 frame is a keyframe when bit 0 of its first byte is 0 (RFC 6386 9.1)."""
    return bool(data) and not (data[0] & 0x01)


class Publication:
    """One published track (a participant's audio or video): fans packets out."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.subscribers: set[SubscriberTrack] = set()
        self.receiver: RTCRtpReceiver | None = None
        self.frames_forwarded = 0
        self._last_pli = 0.0
        self._deferred_pli: asyncio.TimerHandle | None = None
        self.ended = False

    def push(self, packet: av.Packet | None) -> None:
        if packet is None:
            self.ended = True
        else:
            self.frames_forwarded += 1
        for subscriber in list(self.subscribers):
            subscriber._push(packet)

    def request_keyframe(self) -> None:
        """Send a PLI to the publisher (rate-limited).

        A request within ``PLI_MIN_INTERVAL`` of the last PLI is sent when the interval
        ends, not dropped: a viewer just attached (e.g. back from weak-link mode) shows
        nothing until a keyframe comes, and a publisher may send none for minutes.
        """
        if self.kind != "video" or self.receiver is None or self.ended:
            return
        now = time.monotonic()
        wait = self._last_pli + PLI_MIN_INTERVAL - now
        if wait > 0:
            if self._deferred_pli is None:
                self._deferred_pli = asyncio.get_running_loop().call_later(
                    wait, self._send_deferred_pli
                )
            return
        # The media SSRC, not the retransmission (RTX) one.
        rtx: dict[int, int] = getattr(self.receiver, "_RTCRtpReceiver__rtx_ssrc", {})
        sources = [s.source for s in self.receiver.getSynchronizationSources()]
        media = [source for source in sources if source not in rtx]
        if not media:
            return
        self._last_pli = now
        asyncio.ensure_future(self.receiver._send_rtcp_pli(media[-1]))

    def _send_deferred_pli(self) -> None:
        self._deferred_pli = None
        self.request_keyframe()

    def subscribe(self) -> SubscriberTrack:
        track = SubscriberTrack(self.kind)
        track.attach(self)
        return track


class SubscriberTrack(MediaStreamTrack):
    """A viewer's copy of a publication; ``recv()`` returns encoded ``av.Packet``.

    It can be detached (sends nothing) and attached to another publication of the same
    kind, so that a sender, its transceiver and m-line are reused when a participant
    reconnects instead of piling up.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.publication: Publication | None = None
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        # Video starts at a keyframe; a frame lost to an overflow waits for the next one.
        self._need_keyframe = kind == "video"
        # Timestamps stay continuous across attachments: a viewer's jitter buffer would
        # drop frames whose RTP timestamps jump back (a new publication starts at 0).
        self._pts_offset = 0
        self._last_pts: int | None = None
        self._rebase = False

    def attach(self, publication: Publication) -> None:
        assert publication.kind == self.kind
        self.detach()
        self.publication = publication
        publication.subscribers.add(self)
        self._need_keyframe = self.kind == "video"
        self._rebase = self._last_pts is not None
        publication.request_keyframe()

    def detach(self) -> None:
        if self.publication is not None:
            self.publication.subscribers.discard(self)
            self.publication = None
        while not self._queue.empty():
            self._queue.get_nowait()

    def request_keyframe(self) -> None:
        if self.publication is not None:
            self.publication.request_keyframe()

    def _push(self, packet: av.Packet | None) -> None:
        if packet is None:
            # The publisher's stream ended; this sender stays, idle, until it is attached
            # to another publication (e.g. the same participant reconnecting).
            self.detach()
            return
        if self._queue.qsize() >= SUBSCRIBER_QUEUE_LIMIT:
            # The viewer's sender is not keeping up: drop and restart at a keyframe.
            while not self._queue.empty():
                self._queue.get_nowait()
            if self.kind == "video":
                self._need_keyframe = True
                self.request_keyframe()
        if self._need_keyframe:
            if not packet.is_keyframe:
                return
            self._need_keyframe = False
        assert packet.pts is not None
        assert packet.time_base is not None
        if self._rebase:
            step = packet.time_base.denominator // (30 if self.kind == "video" else 50)
            self._pts_offset = self._last_pts + step - packet.pts  # type: ignore[operator]
            self._rebase = False
        if self._pts_offset:
            # the packet is shared with the other viewers: shift a copy
            shifted = av.Packet(bytes(packet))
            shifted.pts = packet.pts + self._pts_offset
            shifted.time_base = packet.time_base
            packet = shifted
        self._last_pts = packet.pts
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self.detach()
            self._queue.put_nowait(None)  # wakes a pending recv()
        super().stop()


class _FrameSink:
    """Stands in for the decoder thread's input queue."""

    def __init__(self, publication: Publication) -> None:
        self.publication = publication
        self.time_bases: dict[int, fractions.Fraction] = {}

    def put(self, task: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if task is None:
            self.publication.push(None)
            return
        codec, frame = task
        packet = av.Packet(frame.data)
        time_base = self.time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = self.time_bases[codec.clockRate] = fractions.Fraction(1, codec.clockRate)
        packet.pts = frame.timestamp
        packet.time_base = time_base
        if codec.mimeType.lower() == "video/vp8":
            packet.is_keyframe = is_vp8_keyframe(frame.data)
        else:
            packet.is_keyframe = True
        self.publication.push(packet)


class _NoThread:
    """Stands in for the decoder thread: there is nothing to join."""

    def join(self) -> None:
        return None


# aiortc's NackGenerator asks again for a lost packet only while it is less than this many
# packets behind the newest (aiortc.rtcrtpreceiver RTP_HISTORY_SIZE): past it, waiting is vain.
NACK_WINDOW = 128
# While a gap still holds the picture back, the keyframe request is repeated this often (the
# keyframe sent for the first one may itself have lost a packet on a bad link).
KEYFRAME_REQUEST_REPEAT = 2.0


def _starts_vp8_keyframe(packet: Any) -> bool:
    """Is this RTP packet the first of a VP8 keyframe? (RFC 7741: S bit set, partition 0.)"""
    payload = packet.payload
    return (
        bool(payload)
        and bool(payload[0] & 0x10)
        and not payload[0] & 0x07
        and is_vp8_keyframe(packet._data)
    )


class EagerJitterBuffer(JitterBuffer):
    """Releases a frame as soon as it is complete instead of one frame later.

    And does not wait for a lost video packet longer than it helps: aiortc's buffer holds
    every later frame back until the lost one arrives or 512 packets pile up behind it,
    which on a lossy uplink froze a publisher's video for seconds. Here a complete keyframe
    after the gap is released at once (nothing before it matters to a decoder), and a gap
    that has fallen out of the retransmission window asks the publisher for a keyframe
    (again every 2 s while it lasts: a keyframe takes a while on a slow link).
    """

    _pli_asked_at: float | None = None  # when the publisher was asked for a keyframe

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is not None or not self._is_video or self._origin is None:
            return pli_flag, frame
        newest = uint16_add(packet.sequence_number, -self._origin)
        if newest >= self._capacity:
            return pli_flag, frame
        slot = self._origin % self._capacity
        gap = next(
            (
                count
                for count in range(newest)
                if self._packets[(slot + count) % self._capacity] is None
            ),
            None,
        )
        if gap is None:
            return pli_flag, frame  # the head frame is merely still arriving
        keyframe = self._complete_keyframe_after(gap, newest)
        if keyframe is not None:
            self.remove(keyframe)
            self._pli_asked_at = None
            return pli_flag, self._remove_frame(packet.sequence_number)
        now = time.monotonic()
        if newest >= NACK_WINDOW and (
            self._pli_asked_at is None or now - self._pli_asked_at >= KEYFRAME_REQUEST_REPEAT
        ):
            self._pli_asked_at = now
            pli_flag = True
        return pli_flag, frame

    def _complete_keyframe_after(self, gap: int, newest: int) -> int | None:
        """The offset of the first keyframe after `gap` whose packets have all arrived."""
        assert self._origin is not None
        for start in range(gap + 1, newest + 1):
            first = self._packets[(self._origin + start) % self._capacity]
            if first is None or not _starts_vp8_keyframe(first):
                continue
            for count in range(start, newest + 1):
                packet = self._packets[(self._origin + count) % self._capacity]
                if packet is None or packet.timestamp != first.timestamp:
                    break
                if packet.marker:
                    return start
        return None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        assert self._origin is not None
        if not self._is_video:
            # One audio packet is one frame: release it now, skipping any gap before it.
            pos = sequence_number % self._capacity
            packet = self._packets[pos]
            if packet is None:
                return None
            self.remove(uint16_add(sequence_number, -self._origin) + 1)
            return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
        packets = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # no marker bit on the previous frame: complete it the way aiortc does
                self.remove(count)
                return JitterFrame(
                    data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                    timestamp=timestamp,
                )
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(
                    data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                    timestamp=timestamp,
                )
        return None


class _ForwardingReceiver(RTCRtpReceiver):
    """An RTCRtpReceiver whose complete frames go to a Publication, never a decoder."""

    _publication: Publication

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if self._RTCRtpReceiver__started:
            return
        codecs: dict[int, RTCRtpCodecParameters] = self._RTCRtpReceiver__codecs
        rtx_ssrc: dict[int, int] = self._RTCRtpReceiver__rtx_ssrc
        for codec in parameters.codecs:
            codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        self._RTCRtpReceiver__decoder_queue = _FrameSink(self._publication)
        self._RTCRtpReceiver__decoder_thread = _NoThread()
        self.transport._register_rtp_receiver(self, parameters)
        self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self._RTCRtpReceiver__started = True


def make_forwarding_receiver(receiver: RTCRtpReceiver, eager: bool = True) -> Publication:
    """Turn ``receiver`` (before it starts) into a forwarder; returns its Publication.

    Call this after ``setRemoteDescription`` created the transceiver and before the
    connection starts the receiver (``setLocalDescription`` of the answer).
    """
    if receiver._RTCRtpReceiver__started:
        raise RuntimeError("the receiver has already started decoding")
    kind: str = receiver._RTCRtpReceiver__kind
    publication = Publication(kind)
    publication.receiver = receiver
    receiver.__class__ = _ForwardingReceiver
    receiver._publication = publication  # type: ignore[attr-defined]
    if eager:
        old: JitterBuffer = receiver._RTCRtpReceiver__jitter_buffer
        receiver._RTCRtpReceiver__jitter_buffer = EagerJitterBuffer(  # type: ignore[attr-defined]
            capacity=old.capacity, prefetch=0, is_video=kind == "video"
        )
    return publication


def attach_subscriber(sender: RTCRtpSender, track: SubscriberTrack) -> None:
    """Route the viewer's keyframe requests (PLI/FIR) to the publisher."""
    request: Callable[[], None] = track.request_keyframe
    sender._send_keyframe = request  # type: ignore[method-assign]


def receiver_publication(receiver: Any) -> Publication | None:
    return getattr(receiver, "_publication", None)


# --- The weak-link low copy's encoder ----------------------------------------------------------

# aiortc 1.16.0's Vp8Encoder never goes below aiortc.codecs.vpx.MIN_BITRATE (250 kbit/s); the
# low copy for a participant on a weak link is meant to stay near 150 kbit/s.
LOW_COPY_MIN_BITRATE = 100_000


class LowCopyVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder (its realtime CBR settings), made for the weak-link low copy.

    Two changes, both to aiortc 1.16.0's ``Vp8Encoder``: ``target_bitrate`` may go down to
    ``LOW_COPY_MIN_BITRATE`` (the base class keeps it in its private ``__target_bitrate``,
    which also sizes the rate-control buffer, so that is what is set); and ``encode()``
    returns each VP8 frame whole, ``([frame bytes], timestamp)``, not as RTP payloads: the
    frame goes out as an ``av.Packet`` to each low viewer's sender, which packetizes it.
    """

    @property
    def target_bitrate(self) -> int:
        return self._Vp8Encoder__target_bitrate  # type: ignore[attr-defined,no-any-return]

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._Vp8Encoder__target_bitrate = max(LOW_COPY_MIN_BITRATE, min(bitrate, MAX_BITRATE))

    @classmethod
    def _packetize(cls, buffer: bytes, picture_id: int) -> list[bytes]:
        return [buffer] if buffer else []


# --- Renegotiation with browsers ---------------------------------------------------------------


async def create_offer_keeping_codecs(pc: RTCPeerConnection) -> RTCSessionDescription:
    """``pc.createOffer()``, leaving the codecs of m-lines already negotiated as they are.

    aiortc 1.16.0's createOffer() resets every transceiver's codecs to its own numbering
    (VP8 = 97, RTX = 98). A sender whose m-line the last answer negotiated may not have
    started yet (aiortc starts senders in a task of its own); if the next offer comes first
    it starts with 97 for VP8 where the participant agreed VP8 = 96, RTX = 97, and the
    participant drops every video packet as RTX of an unknown stream: that viewer never
    sees the picture (three-party calls, one renegotiation right after another). The
    broker's offers keep the negotiated payload types (:func:`align_payload_types`), so
    the negotiated codecs stay right.
    """
    negotiated = {t: t._codecs for t in pc.getTransceivers() if t.currentDirection is not None}
    offer = await pc.createOffer()
    for transceiver, codecs in negotiated.items():
        transceiver._codecs = codecs
    return offer


_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)(.*)$", re.MULTILINE)


def align_header_extension_ids(offer_sdp: str, negotiated_sdp: str) -> str:
    """The broker's renegotiation offer, with RTP header extension ids as already negotiated.

    aiortc 1.16.0's createOffer() gives every m-line its own default extension ids (mid = 1,
    ...), while the browser's first offer chose others (Chrome: mid = 4, ...). Chrome then
    refuses the broker's offer ("RTP extension ID reassignment not supported"), and no one
    sees anyone. Each URI keeps the id of the negotiated description; URIs new to the
    session get ids that are still free. One mapping for all m-lines, as BUNDLE requires.
    """
    negotiated = {uri: int(number) for number, _, uri, _ in _EXTMAP.findall(negotiated_sdp)}
    taken = set(negotiated.values())
    chosen = dict(negotiated)

    def renumber(match: re.Match[str]) -> str:
        _, direction, uri, rest = match.groups()
        if uri not in chosen:
            chosen[uri] = next(number for number in range(1, 15) if number not in taken)
            taken.add(chosen[uri])
        return f"a=extmap:{chosen[uri]}{direction or ''} {uri}{rest}"

    return _EXTMAP.sub(renumber, offer_sdp)


_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)(?:/(\d+))?", re.MULTILINE)
_APT = re.compile(r"^a=fmtp:(\d+) .*?\bapt=(\d+)", re.MULTILINE)


def _codec_keys(section: str) -> dict[int, tuple]:
    """Payload type → a key naming its codec ("rtx" keys name the codec they repair)."""
    names = {
        int(pt): (name.lower(), clock, channels or "") for pt, name, clock, channels in
        _RTPMAP.findall(section)
    }  # fmt: skip
    repaired = {int(pt): int(apt) for pt, apt in _APT.findall(section)}
    keys = {}
    for pt, key in names.items():
        if key[0] == "rtx" and pt in repaired and repaired[pt] in names:
            keys[pt] = ("rtx", *names[repaired[pt]])
        else:
            keys[pt] = key
    return keys


def _sections(sdp: str) -> list[str]:
    parts = re.split(r"(?=^m=)", sdp, flags=re.MULTILINE)
    return parts


def align_payload_types(offer_sdp: str, negotiated_sdp: str) -> str:
    """The broker's renegotiation offer, with each codec's payload type as already negotiated.

    aiortc 1.16.0's createOffer() numbers codecs its own way (VP8 = 97, its RTX = 98), while
    the browser's first offer chose others (VP8 = 96, RTX = 97). After such an offer the
    browser sends VP8 as 97, which the broker's receiver still reads as RTX and drops: the
    others see one frame, then nothing. Payload types of the same codec keep their number.
    """
    wanted: dict[tuple, int] = {}
    for section in _sections(negotiated_sdp)[1:]:
        kind = section.split(" ", 1)[0][2:]
        for pt, key in _codec_keys(section).items():
            wanted.setdefault((kind, *key), pt)
    out = []
    for section in _sections(offer_sdp):
        if not section.startswith("m="):
            out.append(section)
            continue
        kind = section.split(" ", 1)[0][2:]
        keys = _codec_keys(section)
        taken = {pt for (k, *_), pt in wanted.items() if k == kind}
        mapping: dict[int, int] = {}
        for pt, key in keys.items():
            target = wanted.get((kind, *key))
            if target is None:
                target = next(
                    n for n in range(96, 128) if n not in taken and n not in mapping.values()
                )
            taken.add(target)
            mapping[pt] = target
        if any(old != new for old, new in mapping.items()):
            section = _renumber(section, mapping)
        out.append(section)
    return "".join(out)


def _renumber(section: str, mapping: dict[int, int]) -> str:
    lines = section.split("\r\n")
    first = lines[0].split(" ")
    first[3:] = [str(mapping.get(int(pt), pt)) if pt.isdigit() else pt for pt in first[3:]]
    lines[0] = " ".join(first)
    for index, line in enumerate(lines[1:], start=1):
        match = re.match(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)(.*)$", line)
        if match:
            attribute, pt, rest = match.groups()
            rest = re.sub(r"\bapt=(\d+)", lambda m: f"apt={mapping.get(int(m[1]), m[1])}", rest)
            lines[index] = f"a={attribute}:{mapping.get(int(pt), pt)}{rest}"
    return "\r\n".join(lines)
