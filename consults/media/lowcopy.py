"""Weak-link mode: a low copy of a participant's video for viewers on a poor link.

The one place the broker decodes. A :class:`LowCopy` takes one video
:class:`~consults.media.forwarding.Publication`, decodes it once, scales it to at most
320x240 (aspect ratio kept, even dimensions), keeps at most 15 frames a second and
encodes them once as VP8 near 150 kbit/s. It is itself a Publication, so a viewer's
existing :class:`~consults.media.forwarding.SubscriberTrack` is re-attached to it and back
without renegotiation, and a low viewer's keyframe request (PLI) reaches the low copy's
encoder, not the publisher.

:class:`LowCopies` (one per room) keeps one low copy per publication: made when its first
low viewer appears, stopped when the last one leaves or the publication ends. Audio is
never decoded.

The decoding, scaling and encoding of each frame run in the event loop's default executor
(as aiortc's own encoder does), one frame at a time per low copy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import av
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError

from consults.media.forwarding import (
    PLI_MIN_INTERVAL,
    LowCopyVp8Encoder,
    Publication,
    SubscriberTrack,
    is_vp8_keyframe,
)

logger = logging.getLogger(__name__)

LOW_MAX_WIDTH = 320
LOW_MAX_HEIGHT = 240
LOW_FPS = 15
LOW_BITRATE = 150_000  # bit/s

_RTP_CLOCK = 90_000
_WRAP = 1 << 32  # RTP timestamps are 32-bit


def _signed(ticks: int) -> int:
    """A difference of RTP timestamps, across a wrap: within +-2**31."""
    return (ticks + _WRAP // 2) % _WRAP - _WRAP // 2


def low_size(width: int, height: int) -> tuple[int, int]:
    """The low copy's picture size: within 320x240, aspect ratio kept, even (yuv420p)."""
    scale = min(1.0, LOW_MAX_WIDTH / width, LOW_MAX_HEIGHT / height)
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


class FrameRateLimiter:
    """Which frames to keep for at most ``fps`` a second, from their 90 kHz RTP timestamps.

    A frame is kept when it is due (a little early is fine: camera timestamps jitter);
    each kept frame moves the due time one interval on, so the average never exceeds
    ``fps``. Timestamps wrap at 2**32.
    """

    def __init__(self, fps: int = LOW_FPS) -> None:
        self.interval = _RTP_CLOCK // fps
        self._tolerance = self.interval // 4
        self._due: int | None = None

    def keep(self, timestamp: int) -> bool:
        if self._due is None:
            self._due = timestamp + self.interval
            return True
        late = _signed(timestamp - self._due)
        if -self.interval <= late < -self._tolerance:
            return False  # within the interval of the last frame kept
        # after a gap or a jump back (a new stream), count from this frame, not catch up
        due = self._due if abs(late) <= self.interval else timestamp
        self._due = (due + self.interval) % _WRAP
        return True


class _SourceTap(SubscriberTrack):
    """The low copy's own subscription to the original: starts at a keyframe, and ends
    (``recv`` raises) when the publication ends, where a viewer's track would stay idle."""

    def _push(self, packet: av.Packet | None) -> None:
        if packet is None:
            self.stop()
            return
        super()._push(packet)

    def restart_at_keyframe(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._need_keyframe = True
        self.request_keyframe()


class LowCopy(Publication):
    """A reduced copy of one video publication, decoded and encoded once for all its
    low viewers (``subscribers``)."""

    def __init__(self, source: Publication, on_end: Callable[[LowCopy], None]) -> None:
        assert source.kind == "video"
        super().__init__("video")
        self.source = source
        self.encoder = LowCopyVp8Encoder()
        self.encoder.target_bitrate = LOW_BITRATE
        self.keyframes_requested = 0
        self._decoder = av.CodecContext.create("vp8", "r")
        self._limiter = FrameRateLimiter(LOW_FPS)
        self._on_end = on_end
        self._keyframe_wanted = False
        self._last_forced = -math.inf
        # the copy's own timeline: continuous 90 kHz ticks, whatever the source's wraps
        self._pts = 0
        self._last_source_pts: int | None = None
        self._tap = _SourceTap("video")
        self._tap.attach(source)  # asks the publisher for a keyframe to start from
        self._task = asyncio.ensure_future(self._run())

    def request_keyframe(self) -> None:
        """A low viewer lost the picture: the next frame encoded is a keyframe (at most one
        forced keyframe per ``PLI_MIN_INTERVAL``; a request is deferred, never dropped)."""
        self.keyframes_requested += 1
        self._keyframe_wanted = True

    def stop(self) -> None:
        """Stop decoding and encoding (the last low viewer left, or the room closed)."""
        self._task.cancel()

    @property
    def is_running(self) -> bool:
        return not self._task.done()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    packet = await self._tap.recv()
                except MediaStreamError:
                    break  # the publication ended
                assert packet.pts is not None
                keep = self._limiter.keep(packet.pts)
                force = keep and self._take_keyframe_request()
                pts = self._advance(packet.pts)
                try:
                    data = await loop.run_in_executor(
                        None, self._transcode, bytes(packet), pts, keep, force
                    )
                except av.FFmpegError:
                    # a damaged frame: start again from the publisher's next keyframe
                    logger.debug("low copy: undecodable frame", exc_info=True)
                    self._tap.restart_at_keyframe()
                    data = None
                if force and not data:  # nothing encoded: the next frame kept is the keyframe
                    self._keyframe_wanted, self._last_forced = True, -math.inf
                if data:
                    out = av.Packet(data)
                    out.pts = pts
                    out.time_base = VIDEO_TIME_BASE
                    out.is_keyframe = is_vp8_keyframe(data)
                    self.push(out)
        finally:
            self._tap.stop()
            if not self.ended:
                self.push(None)  # viewers still attached go idle, as with any ended publication
            self._on_end(self)

    def _take_keyframe_request(self) -> bool:
        now = time.monotonic()
        if not self._keyframe_wanted or now - self._last_forced < PLI_MIN_INTERVAL:
            return False
        self._keyframe_wanted = False
        self._last_forced = now
        return True

    def _advance(self, source_pts: int) -> int:
        if self._last_source_pts is not None:
            step = _signed(source_pts - self._last_source_pts)
            # the encoder's rate control needs time to move forward, whatever the source does
            self._pts += step if 0 < step <= 10 * _RTP_CLOCK else _RTP_CLOCK // 30
        self._last_source_pts = source_pts
        return self._pts

    def _transcode(self, data: bytes, pts: int, keep: bool, force_keyframe: bool) -> bytes | None:
        """Decode one source frame; if kept, scale and encode it. Runs in the executor."""
        frames = self._decoder.decode(av.Packet(data))
        if not keep or not frames:
            return None
        frame = frames[-1]
        width, height = low_size(frame.width, frame.height)
        small = frame.reformat(width=width, height=height, format="yuv420p")
        small.pts = pts
        small.time_base = VIDEO_TIME_BASE
        payloads, _timestamp = self.encoder.encode(small, force_keyframe)
        return payloads[0] if payloads else None


class LowCopies:
    """The low copies of one room: at most one per publication, while it has low viewers."""

    def __init__(self) -> None:
        self._copies: dict[Publication, LowCopy] = {}

    def __len__(self) -> int:
        return len(self._copies)

    def of(self, source: Publication) -> LowCopy | None:
        return self._copies.get(source)

    def acquire(self, source: Publication) -> LowCopy:
        """The low copy of ``source``, made now if it has none; the caller attaches to it."""
        copy = self._copies.get(source)
        if copy is None:
            copy = self._copies[source] = LowCopy(source, on_end=self._ended)
        return copy

    def release(self, copy: LowCopy) -> None:
        """A viewer detached from ``copy``: stop it if it was the last."""
        if not copy.subscribers and self._copies.get(copy.source) is copy:
            del self._copies[copy.source]
            copy.stop()

    def close(self) -> None:
        copies, self._copies = list(self._copies.values()), {}
        for copy in copies:
            copy.stop()

    def _ended(self, copy: LowCopy) -> None:
        if self._copies.get(copy.source) is copy:
            del self._copies[copy.source]
