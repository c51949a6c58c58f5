"""Media broker benchmark: forwarding encoded frames vs aiortc's plain decode-and-re-encode relay.

    .venv/bin/python bench/media_broker.py [--sessions 1 2 4] [--seconds 10] [--warmup 3]

For each mode and each N, N two-party sessions at 640x480@30 run through a broker in its
own process, on 127.0.0.1 only:

- forward: consults.media.room.Room (our broker: encoded frames forwarded, no decoder);
- plain:   aiortc as usually written: each received track decoded, MediaRelay, and
           re-encoded by each viewer's RTCRtpSender (VP8 at aiortc's default 500 kbit/s).

The clients (this process) send pre-encoded VP8 (640x480, ~500 kbit/s, a keyframe every
second, encoded once before the run) and count the frames they receive without decoding
them, so they cost little next to the broker. Video only (audio adds the same small
per-packet cost to both modes).

Measured over --seconds after --warmup: the broker process's CPU (all its threads:
libvpx's and the executor's included) per forwarded stream, the streams one core holds at
that cost, and the frames per second each viewer gets (30 means nothing dropped). Prints
a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import functools
import json
import os
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aioice.ice  # noqa: E402
import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402

from consults.media.forwarding import Publication, make_forwarding_receiver  # noqa: E402
from consults.media.room import Room  # noqa: E402

SCRIPT = os.path.abspath(__file__)
MODES = ("forward", "plain", "forward-aiortc-jb")
WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


def loopback_only() -> None:
    # aioice leaves 127.0.0.1 out of host candidates; this benchmark uses nothing else.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


# --- the broker process ------------------------------------------------------------------


class WaitingRelayTrack(MediaStreamTrack):
    """Plain mode: the sender's track; waits for the other participant's decoded track."""

    kind = "video"

    def __init__(self, session: PlainSession, other: str) -> None:
        super().__init__()
        self.session = session
        self.other = other
        self.inner: MediaStreamTrack | None = None

    async def recv(self) -> Any:
        while self.inner is None:
            track = self.session.tracks.get(self.other)
            if track is None:
                await asyncio.sleep(0.05)
                continue
            self.inner = self.session.relay.subscribe(track, buffered=False)
        return await self.inner.recv()


class PlainSession:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.pcs: list[RTCPeerConnection] = []

    async def offer(self, who: str, other: str, sdp: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks[who] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            transceiver.direction = "sendrecv"
            transceiver.sender.replaceTrack(WaitingRelayTrack(self, other))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp


async def serve_broker(mode: str) -> None:
    loopback_only()
    if mode == "forward-aiortc-jb":
        # The same broker with aiortc's own jitter buffer, which releases a frame only when
        # the next frame's first packet arrives: shows what the eager buffer saves.
        import consults.media.room

        consults.media.room.make_forwarding_receiver = functools.partial(  # type: ignore[assignment]
            make_forwarding_receiver, eager=False
        )
    rooms: dict[str, Room] = {}
    plain: dict[str, PlainSession] = {}
    done = asyncio.Event()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message).encode() + b"\n")

        def room_for(session: str) -> Room:
            if session not in rooms:

                async def on_signal(key: str, signal: dict[str, Any]) -> None:
                    send({"op": "offer", "session": session, "key": key, "sdp": signal["sdp"]})

                rooms[session] = Room([], on_signal=on_signal)
            return rooms[session]

        while line := await reader.readline():
            message = json.loads(line)
            op = message["op"]
            if op == "cpu":
                send({"op": "cpu", "t": time.process_time()})
            elif op == "offer" and mode != "plain":
                room = room_for(message["session"])
                peer = room.peer(message["key"]) or room.join(message["key"])
                answer = await peer.handle_offer(message["sdp"])
                send({**message, "op": "answer", "sdp": answer})
            elif op == "offer":
                session = plain.setdefault(message["session"], PlainSession())
                other = "b" if message["key"] == "a" else "a"
                answer = await session.offer(message["key"], other, message["sdp"])
                send({**message, "op": "answer", "sdp": answer})
            elif op == "answer":
                peer = rooms[message["session"]].peer(message["key"])
                assert peer is not None
                await peer.handle_answer(message["sdp"])
            elif op == "quit":
                break
            await writer.drain()
        for room in rooms.values():
            await room.close()
        for session in plain.values():
            for pc in session.pcs:
                await pc.close()
        writer.close()
        done.set()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    server.close()


# --- the clients (this process) ----------------------------------------------------------


def pre_encode(seconds: int = 4) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate = 500_000
    codec.gop_size = FPS
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    frames = []
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 40, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    for i in range(seconds * FPS):
        image = noise.copy()
        x = (i * 8) % (WIDTH - 80)
        image[:, x : x + 80] = (200, 80, 60)
        image[(i * 4) % (HEIGHT - 40) :][:40, :] = (40, 160, 90)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for packet in codec.encode(frame):
            frames.append(bytes(packet))
    return frames


class LoopedCamera(MediaStreamTrack):
    """Sends the pre-encoded frames in a loop at 30 fps."""

    kind = "video"

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__()
        self.frames = frames
        self.index = 0
        self.start: float | None = None
        self.sent: dict[bytes, float] = {}  # frame bytes -> when last sent

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.index / FPS
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        data = self.frames[self.index % len(self.frames)]
        self.sent[data] = time.monotonic()
        packet = av.Packet(data)
        packet.pts = self.index * (90000 // FPS)
        packet.time_base = VIDEO_TIME_BASE
        self.index += 1
        return packet


class BenchClient:
    def __init__(self, session: str, key: str, frames: list[bytes], link: Link) -> None:
        self.session, self.key, self.link = session, key, link
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.camera = LoopedCamera(frames)
        self.pc.addTransceiver(self.camera, direction="sendrecv")
        self.publications: list[Publication] = []
        self.other: BenchClient | None = None
        self.latencies: list[float] = []

    def _count_new_receivers(self) -> None:
        # Count what arrives without decoding it: the clients must stay cheap.
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if getattr(receiver, "_publication", None) is None:
                publication = make_forwarding_receiver(receiver)
                self.publications.append(publication)
                self._time_arrivals(publication)

    def _time_arrivals(self, publication: Publication) -> None:
        # Forwarded frames arrive with the bytes the other client sent: match them to find
        # when that frame was sent (re-encoded frames never match, so plain mode has none).
        push = publication.push

        def timed_push(packet: av.Packet | None) -> None:
            if packet is not None and self.other is not None:
                sent = self.other.camera.sent.get(bytes(packet))
                if sent is not None:
                    self.latencies.append(time.monotonic() - sent)
            push(packet)

        publication.push = timed_push  # type: ignore[method-assign]

    @property
    def received(self) -> int:
        return sum(p.frames_forwarded for p in self.publications)

    async def connect(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._count_new_receivers()
        answer = await self.link.request(
            {
                "op": "offer",
                "session": self.session,
                "key": self.key,
                "sdp": self.pc.localDescription.sdp,
            }
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def on_offer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._count_new_receivers()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.link.send(
            {
                "op": "answer",
                "session": self.session,
                "key": self.key,
                "sdp": self.pc.localDescription.sdp,
            }
        )


class Link:
    """JSON lines to the broker process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.clients: dict[tuple[str, str], BenchClient] = {}
        self.waiting: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self.task = asyncio.ensure_future(self._read())

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message).encode() + b"\n")

    async def request(self, message: dict[str, Any]) -> Any:
        wait_key = (message.get("session", ""), message.get("key", message["op"]))
        future = self.waiting[wait_key] = asyncio.get_running_loop().create_future()
        self.send(message)
        return await future

    async def _read(self) -> None:
        while line := await self.reader.readline():
            message = json.loads(line)
            if message["op"] == "answer":
                self.waiting.pop((message["session"], message["key"])).set_result(message["sdp"])
            elif message["op"] == "cpu":
                self.waiting.pop(("", "cpu")).set_result(message["t"])
            elif message["op"] == "offer":
                client = self.clients[(message["session"], message["key"])]
                asyncio.ensure_future(client.on_offer(message["sdp"]))


async def run_case(
    mode: str, sessions: int, frames: list[bytes], warmup: float, seconds: float
) -> dict[str, float]:
    loopback_only()
    broker = await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, "--serve", mode, stdout=asyncio.subprocess.PIPE
    )
    assert broker.stdout is not None
    port = int(await broker.stdout.readline())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    link = Link(reader, writer)
    clients = []
    for s in range(sessions):
        for key in ("a", "b"):
            client = BenchClient(str(s), key, frames, link)
            link.clients[(str(s), key)] = client
            clients.append(client)
        a, b = clients[-2:]
        a.other, b.other = b, a
    for client in clients:
        await client.connect()
    await asyncio.sleep(warmup)
    cpu0 = await link.request({"op": "cpu"})
    received0 = [c.received for c in clients]
    for client in clients:
        client.latencies.clear()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    cpu1 = await link.request({"op": "cpu"})
    elapsed = time.monotonic() - t0
    received1 = [c.received for c in clients]
    link.send({"op": "quit"})
    await writer.drain()
    await asyncio.wait_for(broker.wait(), 30)
    for client in clients:
        await client.pc.close()
    link.task.cancel()
    streams = 2 * sessions
    cores = (cpu1 - cpu0) / elapsed
    fps = [(r1 - r0) / elapsed for r0, r1 in zip(received0, received1, strict=True)]
    latencies = sorted(x for c in clients for x in c.latencies)
    if latencies:
        median = latencies[len(latencies) // 2] * 1000
        p95 = latencies[int(len(latencies) * 0.95)] * 1000
    else:
        median = p95 = float("nan")
    return {
        "streams": streams,
        "cores": cores,
        "per_stream": cores / streams,
        "fps_min": min(fps),
        "fps_mean": sum(fps) / len(fps),
        "latency_median_ms": median,
        "latency_p95_ms": p95,
    }


async def main(args: argparse.Namespace) -> None:
    print(f"pre-encoding {WIDTH}x{HEIGHT}@{FPS} VP8...", file=sys.stderr)
    frames = pre_encode()
    kbits = sum(len(f) for f in frames) * 8 / (len(frames) / FPS) / 1000
    print(f"  {len(frames)} frames, {kbits:.0f} kbit/s", file=sys.stderr)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for sessions in args.sessions:
        modes = MODES if sessions == args.sessions[0] else ("forward", "plain")
        for mode in modes:
            print(f"{mode}: {sessions} session(s)...", file=sys.stderr)
            results[(mode, sessions)] = await run_case(
                mode, sessions, frames, args.warmup, args.seconds
            )
    print(
        f"\n{os.cpu_count()} cores; VP8 {WIDTH}x{HEIGHT}@{FPS}, ~{kbits:.0f} kbit/s per stream; "
        f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up\n"
    )
    print(
        "| sessions | streams | mode | broker CPU (cores) | per stream (core) | streams/core "
        "| viewer fps min / mean | latency median / p95 (ms) | CPU per stream vs forward |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (mode, sessions), r in results.items():
        ratio = r["per_stream"] / results[("forward", sessions)]["per_stream"]
        print(
            f"| {sessions} | {r['streams']:.0f} | {mode} | {r['cores']:.3f} | "
            f"{r['per_stream']:.4f} | {1 / r['per_stream']:.0f} | "
            f"{r['fps_min']:.1f} / {r['fps_mean']:.1f} | "
            f"{_ms(r['latency_median_ms'])} / {_ms(r['latency_p95_ms'])} | {ratio:.1f}x |"
        )
    print(
        "\nLatency: from the sending client's packetizer to the receiving client's complete "
        "frame, through the broker, on loopback (only measurable where the bytes are "
        "forwarded unchanged). A viewer fps under 30 means frames were dropped: the relay "
        "is saturated, and its per-stream figure is no longer a cost."
    )


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve_broker(arguments.serve))
    else:
        asyncio.run(main(arguments))
