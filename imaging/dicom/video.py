"""Multi-frame images (ultrasound cine, angiography) as MP4 a browser plays: H.264, yuv420p,
even dimensions, the index at the front (+faststart) so playback starts before the download
ends. Made with PyAV; knows nothing of the database."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np
from pydicom.dataset import Dataset

from imaging.dicom.render import display_pixels, iter_decoded_frames

DEFAULT_FPS = 15.0
# Small enough for a 300 kbit/s link; cine loops are rarely bigger than this anyway.
MAX_VIDEO_SIZE = 640


def frame_rate(dataset: Dataset) -> float:
    """Frames per second from the cine module (PS3.3 C.7.6.5), else a default."""
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        try:
            value = float(dataset.get(keyword) or 0)
        except (TypeError, ValueError):
            value = 0
        if value > 0:
            return min(max(value, 1.0), 60.0)
    try:
        frame_time = float(dataset.get("FrameTime") or 0)  # milliseconds
    except (TypeError, ValueError):
        frame_time = 0
    if frame_time > 0:
        return min(max(1000.0 / frame_time, 1.0), 60.0)
    return DEFAULT_FPS


def _even_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_VIDEO_SIZE / max(width, height))
    # H.264 with 4:2:0 chroma needs even dimensions.
    return max(int(width * scale) // 2 * 2, 2), max(int(height * scale) // 2 * 2, 2)


def encode_mp4(frames: Iterable[np.ndarray], *, fps: float = DEFAULT_FPS) -> bytes:
    """8-bit frames (grey or RGB, all the same size) as an H.264 MP4."""
    rate = max(round(fps), 1)
    # +faststart rewrites the file in a second pass, which needs a real file, not a BytesIO.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "video.mp4"
        _write_mp4(path, frames, rate)
        return path.read_bytes()


def _write_mp4(path: Path, frames: Iterable[np.ndarray], rate: int) -> None:
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
        stream = None
        for pixels in frames:
            if pixels.ndim == 2:
                pixels = np.repeat(pixels[..., np.newaxis], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if stream is None:
                width, height = _even_size(frame.width, frame.height)
                stream = output.add_stream("libx264", rate=rate)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "28", "preset": "veryfast"}
            frame = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            for packet in stream.encode(frame):
                output.mux(packet)
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode():
            output.mux(packet)


def dataset_video(dataset: Dataset, *, window: tuple[float, float] | None = None) -> bytes:
    """Every frame of a multi-frame instance, at its default window, as an MP4."""
    frames = (
        display_pixels(dataset, array, photometric, window)
        for array, photometric in iter_decoded_frames(dataset)
    )
    return encode_mp4(frames, fps=frame_rate(dataset))
