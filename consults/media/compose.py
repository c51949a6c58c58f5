"""Compose a session recording: the broker's per-participant files → one MP4 (H.264 + AAC).

The broker (consults/media/recorder.py) leaves, in ``RECORDING_DIR/<recording id>/``, one
Matroska file per published track (VP8 or Opus, as sent) and ``manifest.json``. Here each
participant's video is decoded and tiled (1 → one tile, 2 → side by side, 3-4 → 2x2, more →
a 3-column grid), each tile letterboxed to 640x360; a participant without video at some
moment (not yet there, gone, camera off) shows as a dark tile with their name. All audio
tracks are mixed into one mono 48 kHz AAC track. H.264 (libx264, yuv420p, +faststart) at
15 frames per second. Only this module decodes: the broker never does. It knows nothing of
Django; consults/services/recording.py stores the result (`finish_recording`), run by the
Celery task in consults/recording_tasks.py.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

TILE_W, TILE_H = 640, 360
FPS = 15
RATE = 48000
AUDIO_CHUNK = 1024  # AAC frame size
BACKGROUND = (24, 26, 30)
# A participant whose last frame is older than this shows their name tile instead.
STALE_SECONDS = 2.5  # (their camera stopped sending)


class CompositionError(Exception):
    """The raw files cannot be made into a recording; the message says why."""


@dataclass
class Person:
    key: str
    name: str
    video: list[dict[str, Any]] = field(default_factory=list)
    audio: list[dict[str, Any]] = field(default_factory=list)


def grid(count: int) -> tuple[int, int]:
    """Columns and rows for `count` tiles."""
    if count <= 1:
        return 1, 1
    if count == 2:
        return 2, 1
    if count <= 4:
        return 2, 2
    return 3, (count + 2) // 3


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    if not path.exists():
        raise CompositionError(f"no manifest in {directory}: the broker did not close it")
    return json.loads(path.read_text())


def people_of(manifest: dict[str, Any], names: dict[str, str]) -> list[Person]:
    people: dict[str, Person] = {}
    for segment in sorted(manifest["segments"], key=lambda s: s["start"]):
        key = segment["participant_key"]
        person = people.setdefault(key, Person(key, names.get(key, key)))
        getattr(person, segment["kind"]).append(segment)
    return list(people.values())


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an old Pillow without sizes
        return ImageFont.load_default()


def name_tile(name: str) -> np.ndarray:
    image = Image.new("RGB", (TILE_W, TILE_H), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(28)
    box = draw.textbbox((0, 0), name, font=font)
    x = (TILE_W - (box[2] - box[0])) // 2
    y = (TILE_H - (box[3] - box[1])) // 2
    draw.text((x, y), name, fill=(230, 230, 230), font=font)
    return np.asarray(image)


def letterbox(frame: av.VideoFrame) -> np.ndarray:
    """The frame scaled to fit a tile, centred on black."""
    scale = min(TILE_W / frame.width, TILE_H / frame.height)
    width = max(2, int(frame.width * scale) // 2 * 2)
    height = max(2, int(frame.height * scale) // 2 * 2)
    pixels = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    tile = np.zeros((TILE_H, TILE_W, 3), dtype=np.uint8)
    top, left = (TILE_H - height) // 2, (TILE_W - width) // 2
    tile[top : top + height, left : left + width] = pixels
    return tile


def _decoded(path: Path, kind: str) -> Iterator[Any]:
    """Frames of a raw file; a file cut short (broker killed) ends where it ends."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
            yield from container.decode(stream)
    except (av.error.FFmpegError, IndexError) as problem:
        logger.warning("recording file %s ends early: %s", path, problem)


class VideoTimeline:
    """One participant's video as the output asks for it: the frame shown at time t."""

    def __init__(self, person: Person, directory: Path) -> None:
        self.person = person
        self.frames = (
            (segment, frame)
            for segment in person.video
            for frame in _decoded(directory / segment["file"], "video")
        )
        self.pending: tuple[dict[str, Any], Any] | None = None
        self.current: Any = None  # the last frame due, letterboxed only when shown
        self.current_time = -1.0
        self.current_end = -1.0  # the end of the current frame's segment (they left)
        self.shown: tuple[Any, np.ndarray] | None = None
        self.placeholder = name_tile(person.name)

    def tile_at(self, t: float) -> np.ndarray:
        while True:
            if self.pending is None:
                self.pending = next(self.frames, None)
                if self.pending is None:
                    break
            segment, frame = self.pending
            time = float(frame.time) if frame.time is not None else segment["start"]
            if time > t:
                break
            self.current, self.current_time, self.current_end = frame, time, segment["end"]
            self.pending = None
        if (
            self.current is None
            or t - self.current_time > STALE_SECONDS
            or t > self.current_end + 1 / FPS
        ):
            return self.placeholder
        if self.shown is None or self.shown[0] is not self.current:
            self.shown = (self.current, letterbox(self.current))
        return self.shown[1]


def mix_audio(people: list[Person], directory: Path, samples: int, work: Path) -> np.ndarray:
    """Every participant's audio, decoded and summed into one mono track at 48 kHz (kept on
    disk, not in memory: an hour is 690 MB of float32)."""
    mix = np.lib.format.open_memmap(
        str(work / "mix.npy"), mode="w+", dtype=np.float32, shape=(max(samples, 1),)
    )
    for person in people:
        for segment in person.audio:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            position = None
            for frame in _decoded(directory / segment["file"], "audio"):
                if frame.time is not None:
                    position = round(float(frame.time) * RATE)
                elif position is None:
                    position = round(segment["start"] * RATE)
                for out in resampler.resample(frame):
                    data = out.to_ndarray().reshape(-1)
                    end = min(position + len(data), samples)
                    if end > position >= 0:
                        mix[position:end] += data[: end - position]
                    position += len(data)
    return mix


def compose_mp4(directory: Path, names: dict[str, str], output: Path) -> float:
    """Write the MP4 of the raw files in `directory`; returns its duration in seconds."""
    manifest = read_manifest(directory)
    people = people_of(manifest, names)
    if not people:
        raise CompositionError("nothing was recorded (no media reached the broker)")
    ends = [s["end"] for s in manifest["segments"]]
    duration = max(float(manifest.get("duration") or 0), max(ends, default=0.0))
    if duration <= 0:
        raise CompositionError("the recording is empty")
    columns, rows = grid(len(people))
    width, height = columns * TILE_W, rows * TILE_H
    frames = max(1, round(duration * FPS))
    samples = round(frames / FPS * RATE)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        mix = mix_audio(people, directory, samples, Path(work))
        timelines = [VideoTimeline(person, directory) for person in people]
        with av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            video = out.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"crf": "26", "preset": "veryfast"}
            audio = out.add_stream("aac", rate=RATE, layout="mono")
            audio.bit_rate = 64000
            written = 0
            canvas = np.zeros((height, width, 3), dtype=np.uint8)
            for index in range(frames):
                t = index / FPS
                for number, timeline in enumerate(timelines):
                    row, column = divmod(number, columns)
                    canvas[
                        row * TILE_H : (row + 1) * TILE_H, column * TILE_W : (column + 1) * TILE_W
                    ] = timeline.tile_at(t)
                picture = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                picture.pts = index
                for packet in video.encode(picture.reformat(format="yuv420p")):
                    out.mux(packet)
                # Audio up to the end of this video frame, interleaved with it.
                until = round((index + 1) / FPS * RATE)
                while written + AUDIO_CHUNK <= until or (index == frames - 1 and written < until):
                    chunk = np.clip(mix[written : written + AUDIO_CHUNK], -1.0, 1.0)
                    sound = av.AudioFrame.from_ndarray(
                        chunk.astype(np.float32).reshape(1, -1), format="fltp", layout="mono"
                    )
                    sound.sample_rate, sound.pts = RATE, written
                    for packet in audio.encode(sound):
                        out.mux(packet)
                    written += len(chunk)
            for stream in (video, audio):
                for packet in stream.encode():
                    out.mux(packet)
    return frames / FPS
