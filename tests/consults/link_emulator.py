"""A weak network link, emulated in user space on 127.0.0.1, for WebRTC tests.

The machines that run the suite have no netem qdisc and no iptables, so the link is a UDP
relay that sits between one participant and the broker. Each direction (uplink: participant
to broker, downlink: broker to participant) is a :class:`Pipe` that applies, in this order,
like netem in front of a bottleneck:

1. random loss (seeded, so a run is reproducible for a given packet sequence);
2. a token-bucket rate limit with a bounded queue: packets leave one after another at the
   link rate, and a packet that finds the queue full is dropped (drop-tail);
3. a fixed one-way delay.

Putting it in the path: the relay has one socket per real address on each side. The
participant is told the broker's candidates rewritten to the relay's sockets that face it
(:meth:`LinkEmulator.toward_broker`), and the broker is told the participant's candidates
rewritten to the sockets that face the broker (:meth:`LinkEmulator.toward_participant`).
A packet the participant sends to the relay's stand-in for broker address Y leaves, after the
uplink pipe, from the stand-in for the participant's own address, and so on: each side only
ever sees the addresses it was given (no peer-reflexive candidates), and neither knows the
other's real address, so no packet can bypass the link. :func:`rewrite_candidates` does the
SDP part.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

Address = tuple[str, int]

# IPv4 + UDP headers: a bottleneck carries them too, so they count against the rate.
WIRE_OVERHEAD = 28


@dataclass(frozen=True)
class LinkProfile:
    """One direction of the link."""

    rate_bps: int = 300_000
    delay: float = 0.150  # one way: 300 ms round trip
    loss: float = 0.03
    # 400 ms of traffic at the link rate: a modest modem/3G-like buffer.
    queue_bytes: int = 15_000


@dataclass
class PipeStats:
    packets_in: int = 0
    bytes_in: int = 0
    lost: int = 0  # random loss
    tail_dropped: int = 0  # the queue was full
    packets_out: int = 0
    # (time the packet left the bottleneck, wire bytes), one entry per packet delivered
    departures: list[tuple[float, int]] = field(default_factory=list)
    max_queue_delay: float = 0.0
    # packets offered, by what they are (see :func:`packet_kind`)
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def loss_ratio(self) -> float:
        """The share of packets the random loss took."""
        return self.lost / self.packets_in if self.packets_in else 0.0

    def throughput_bps(self, start: float, end: float) -> float:
        """Wire bits per second that left the bottleneck in [start, end)."""
        sent = sum(size for at, size in self.departures if start <= at < end)
        return sent * 8 / (end - start)

    def throughput_windows(self, start: float, end: float, window: float = 1.0) -> list[float]:
        """Wire bits per second in each window of [start, end)."""
        count = int((end - start) // window)
        return [
            self.throughput_bps(start + i * window, start + (i + 1) * window) for i in range(count)
        ]


class Pipe:
    """One direction: loss, then a rate-limited drop-tail queue, then a delay."""

    def __init__(self, profile: LinkProfile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self.stats = PipeStats()
        self._next_free = 0.0  # when the bottleneck has sent everything queued so far

    def offer(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        wire = len(data) + WIRE_OVERHEAD
        self.stats.packets_in += 1
        self.stats.bytes_in += wire
        kind = packet_kind(data)
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        if self.rng.random() < self.profile.loss:
            self.stats.lost += 1
            return
        rate = self.profile.rate_bps / 8  # bytes per second
        backlog = max(0.0, self._next_free - now) * rate
        if backlog + wire > self.profile.queue_bytes:
            self.stats.tail_dropped += 1
            return
        start = max(now, self._next_free)
        departure = start + wire / rate
        self._next_free = departure
        self.stats.max_queue_delay = max(self.stats.max_queue_delay, start - now)
        self.stats.departures.append((departure, wire))
        loop.call_at(departure + self.profile.delay, self._deliver, data, deliver)

    def _deliver(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        self.stats.packets_out += 1
        deliver(data)


class LinkEmulator:
    """A UDP relay between one participant and the broker that applies a weak link."""

    def __init__(
        self,
        uplink: LinkProfile | None = None,
        downlink: LinkProfile | None = None,
        seed: int = 2,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.uplink = Pipe(uplink or LinkProfile(), random.Random(seed))
        self.downlink = Pipe(downlink or LinkProfile(), random.Random(seed + 1))
        # real broker address -> socket the participant sends to (and receives from)
        self._facing_participant: dict[Address, socket.socket] = {}
        # real participant address -> socket the broker sends to (and receives from)
        self._facing_broker: dict[Address, socket.socket] = {}
        self._closed = False

    def toward_broker(self, broker: Address) -> Address:
        """The address the participant must use for the broker's address ``broker``."""
        return self._socket(self._facing_participant, broker, self._from_participant).getsockname()

    def toward_participant(self, participant: Address) -> Address:
        """The address the broker must use for the participant's address ``participant``."""
        return self._socket(self._facing_broker, participant, self._from_broker).getsockname()

    def participant_side_addresses(self) -> set[Address]:
        """The addresses the participant was given for the broker."""
        return {sock.getsockname() for sock in self._facing_participant.values()}

    def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        for sockets in (self._facing_participant, self._facing_broker):
            for sock in sockets.values():
                loop.remove_reader(sock.fileno())
                sock.close()
            sockets.clear()

    def _socket(
        self,
        sockets: dict[Address, socket.socket],
        real: Address,
        on_datagram: Callable[[socket.socket, Address], None],
    ) -> socket.socket:
        sock = sockets.get(real)
        if sock is None:
            # Plain sockets, so that one can be made from inside a datagram callback (a
            # broker check may arrive before its answer has been rewritten).
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((self.host, 0))
            sock.setblocking(False)
            sockets[real] = sock
            asyncio.get_running_loop().add_reader(sock.fileno(), on_datagram, sock, real)
        return sock

    def _from_participant(self, sock: socket.socket, broker: Address) -> None:
        for data, participant in self._drain(sock):
            out = self._socket(self._facing_broker, participant, self._from_broker)
            self.uplink.offer(data, lambda d, out=out: self._send(out, d, broker))

    def _from_broker(self, sock: socket.socket, participant: Address) -> None:
        for data, broker in self._drain(sock):
            out = self._socket(self._facing_participant, broker, self._from_participant)
            self.downlink.offer(data, lambda d, out=out: self._send(out, d, participant))

    @staticmethod
    def _drain(sock: socket.socket) -> list[tuple[bytes, Address]]:
        datagrams = []
        while True:
            try:
                datagrams.append(sock.recvfrom(65536))
            except (BlockingIOError, InterruptedError):
                return datagrams
            except OSError:  # e.g. ICMP port unreachable from a closed peer
                return datagrams

    def _send(self, sock: socket.socket, data: bytes, to: Address) -> None:
        if self._closed:
            return
        # a full socket buffer or a closed peer: the packet is lost
        with contextlib.suppress(OSError):
            sock.sendto(data, to)


def packet_kind(data: bytes) -> str:
    """What a datagram is, from its clear-text header (RFC 7983): "stun", "dtls", "rtcp" or
    "rtp/<payload type>" (SRTP keeps the RTP header readable)."""
    if not data:
        return "other"
    first = data[0]
    if first < 4:
        return "stun"
    if 20 <= first < 64:
        return "dtls"
    if 128 <= first < 192 and len(data) > 1:
        if 192 <= data[1] <= 223:
            return "rtcp"
        return f"rtp/{data[1] & 0x7F}"
    return "other"


_CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ )(\S+)( \d+ )(\S+) (\d+)( typ \S+)(.*)$", re.MULTILINE | re.IGNORECASE
)
_MEDIA_PORT = re.compile(r"^(m=\w+ )(\d+)( .*)$", re.MULTILINE)
_CONNECTION = re.compile(r"^c=IN IP4 \S+", re.MULTILINE)


def rewrite_candidates(sdp: str, replace: Callable[[Address], Address]) -> str:
    """``sdp`` with every UDP candidate address replaced by ``replace(address)``.

    Other candidates (TCP) are removed, so that nothing can go around the link; the default
    address of each m-line (its port and c= line) follows its first candidate. Related
    addresses (raddr/rport) are left as they are: they are informative only.
    """
    sections = re.split(r"(?=^m=)", sdp, flags=re.MULTILINE)
    return sections[0] + "".join(_rewrite_section(section, replace) for section in sections[1:])


def _rewrite_section(section: str, replace: Callable[[Address], Address]) -> str:
    first: list[Address] = []

    def candidate(match: re.Match[str]) -> str:
        head, transport, priority, host, port, kind, rest = match.groups()
        if transport.lower() != "udp":
            return "\x00"  # removed below
        new = replace((host, int(port)))
        first.append(new)
        return f"{head}{transport}{priority}{new[0]} {new[1]}{kind}{rest}"

    section = _CANDIDATE.sub(candidate, section)
    section = re.sub(r"^\x00\r?\n", "", section, flags=re.MULTILINE)
    if first:
        host, port = first[0]
        section = _MEDIA_PORT.sub(lambda m: f"{m[1]}{port}{m[3]}", section, count=1)
        section = _CONNECTION.sub(f"c=IN IP4 {host}", section, count=1)
    return section
