"""Record a room's media as the participants sent it: encoded packets, never decoded.

A :class:`Recorder` subscribes to publications (``Publication.subscribe()``: a
``SubscriberTrack`` that starts at a keyframe) and writes each one into its own Matroska
file with PyAV, packet for packet (VP8 and Opus mux into Matroska as they are). One file per
publication ("segment"): a participant who reconnects, or turns the camera on later, gets a
new segment, so no file ever needs a stream added after its header.

Timestamps come from the RTP timestamps (90 kHz video, 48 kHz audio), shifted so that every
file counts from the recording's common start: a segment's first packet is placed at the
moment it arrived (monotonic clock), later packets keep their RTP distance from it (unless
that drifts more than ``RESYNC_SECONDS`` from their arrival). Files of different
participants therefore line up.

On :meth:`Recorder.stop` the files are closed and ``manifest.json`` is written next to them:

    {"recording_id": N, "duration": seconds, "started_at": unix time,
     "segments": [{"participant_key", "kind": "audio"|"video", "file", "codec",
                   "start": seconds, "end": seconds, "packets": n}, ...]}

No Django here (the directory comes with the broker's "record" message).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from consults.media.forwarding import Publication, SubscriberTrack

logger = logging.getLogger(__name__)

CLOCK_RATES = {"audio": 48000, "video": 90000}
CODECS = {"audio": "opus", "video": "vp8"}
MANIFEST = "manifest.json"
RTP_WRAP = 1 << 32
# A packet whose RTP time differs from its arrival by more than this is re-anchored.
RESYNC_SECONDS = 2.0


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", key)[:60]


class Segment:
    """One publication's packets in one Matroska file."""

    def __init__(self, path: Path, participant_key: str, kind: str, start: float) -> None:
        self.path = path
        self.participant_key = participant_key
        self.kind = kind
        self.rate = CLOCK_RATES[kind]
        self.time_base = fractions.Fraction(1, self.rate)
        self.start = start  # seconds after the recording's start: first packet's arrival
        self.end = start
        self.packets = 0
        self._container: Any = None
        self._stream: Any = None
        self._last_rtp = 0
        self._unwrapped = 0
        self._last_pts = -1

    def write(self, packet: av.Packet, arrived: float) -> None:
        assert packet.pts is not None
        data = bytes(packet)
        if self._container is None:
            self._open(data)
            self._last_rtp = packet.pts
        # 32-bit RTP timestamps wrap; count on from the first packet.
        step = (packet.pts - self._last_rtp) % RTP_WRAP
        if step >= RTP_WRAP // 2:
            step -= RTP_WRAP  # older than the last one (reordered audio)
        position = self._unwrapped + step
        pts = round(self.start * self.rate) + position
        if abs(pts / self.rate - arrived) > RESYNC_SECONDS:
            # The sender's clock ran away from real time (or a long pause): place this
            # packet at its arrival and count on from there.
            self.start = arrived - position / self.rate
            pts = round(self.start * self.rate) + position
        if pts <= self._last_pts:
            return  # Matroska needs increasing timestamps per stream
        self._unwrapped, self._last_rtp = position, packet.pts
        # A copy: the packet is shared with the viewers' senders, and muxing rescales it.
        out = av.Packet(data)
        out.pts = out.dts = pts
        out.time_base = self.time_base
        out.is_keyframe = bool(packet.is_keyframe)
        out.stream = self._stream
        self._container.mux(out)
        self._last_pts = pts
        self.packets += 1
        self.end = max(self.end, pts / self.rate)

    def _open(self, first: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), mode="w", format="matroska")
        if self.kind == "video":
            stream = container.add_stream(CODECS["video"])
            stream.width, stream.height = vp8_size(first) or (640, 480)
        else:
            # The Opus header (channels, pre-skip) comes from opening the encoder; the packets
            # are the participant's own, never re-encoded.
            stream = container.add_stream(CODECS["audio"], rate=48000)
        stream.time_base = fractions.Fraction(1, 1000)
        self._container, self._stream = container, stream

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):  # a full disk must not stop the others
                self._container.close()
            self._container = None

    def describe(self) -> dict[str, Any]:
        return {
            "participant_key": self.participant_key,
            "kind": self.kind,
            "file": self.path.name,
            "codec": CODECS[self.kind],
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "packets": self.packets,
        }


class Recorder:
    """Records the publications of one room into ``directory``."""

    def __init__(
        self,
        recording_id: int,
        directory: Path | str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recording_id = recording_id
        self.directory = Path(directory)
        self.clock = clock
        self.started = clock()
        self.started_at = time.time()
        self.segments: list[Segment] = []
        self.stopped = False
        self._tracks: dict[int, tuple[Publication, SubscriberTrack, asyncio.Task[None]]] = {}
        self._counter = 0

    def is_recording(self, publication: Publication) -> bool:
        return id(publication) in self._tracks

    def add(self, participant_key: str, publication: Publication) -> None:
        """Record `publication` (a participant's audio or video) from now on; once each."""
        if self.stopped or publication.ended or id(publication) in self._tracks:
            return
        track = publication.subscribe()  # starts at a keyframe, asks the publisher for one
        self._counter += 1
        name = f"{self._counter:03d}-{safe_name(participant_key)}-{publication.kind}.mkv"
        task = asyncio.ensure_future(self._pump(track, participant_key, self.directory / name))
        self._tracks[id(publication)] = (publication, track, task)

    async def _pump(self, track: SubscriberTrack, participant_key: str, path: Path) -> None:
        segment: Segment | None = None
        try:
            while True:
                packet = await track.recv()
                arrived = self.clock() - self.started
                if segment is None:
                    segment = Segment(path, participant_key, track.kind, arrived)
                    self.segments.append(segment)
                segment.write(packet, arrived)
        except MediaStreamError:
            pass
        except Exception:  # one bad stream must not end the others' recording
            logger.exception("recording %s: %s stopped", self.recording_id, path.name)
        finally:
            if segment is not None:
                segment.close()

    def duration(self) -> float:
        return max(0.0, self.clock() - self.started)

    async def stop(self) -> dict[str, Any]:
        """Close every file and write the manifest; returns it."""
        if not self.stopped:
            self.stopped = True
            self._duration = self.duration()
            for _publication, track, _task in self._tracks.values():
                track.stop()  # its recv() raises: the pump closes its file
            tasks = [task for _p, _t, task in self._tracks.values()]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            manifest = self.manifest()
            (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return self.manifest()

    def manifest(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "started_at": self.started_at,
            "duration": round(getattr(self, "_duration", self.duration()), 4),
            "segments": [s.describe() for s in self.segments if s.packets],
        }
