"""The MLLP listener: HL7 v2 over TCP, each message framed as <VT> message <FS><CR>.

Runs on asyncio (python-hl7's `start_hl7_server`); database work runs in a worker thread
through `sync_to_async`, so one slow write never stalls the other connections' reads.
Only addresses on `HL7_ALLOWED_CLIENTS` may connect: MLLP has no authentication of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from hl7.mllp import start_hl7_server
from hl7.mllp.streams import CARRIAGE_RETURN, END_BLOCK, START_BLOCK, HL7StreamReader

from accounts.request_context import request_context
from ehr.models import LabMessage
from ehr.services.lab_results import receive_oru

logger = logging.getLogger(__name__)

# Lab reports may embed PDFs (OBX-5 of type ED); python-hl7's default buffer is 64 KiB.
MAX_MESSAGE_BYTES = 16 * 2**20
BLOCK_END = END_BLOCK + CARRIAGE_RETURN

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowed_clients(entries: Iterable[str]) -> list[Network]:
    """Addresses or networks ("10.0.0.0/24"); a bad entry stops the start, loudly."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def is_allowed(address: str, allowed: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in allowed)


def decode_block(block: bytes) -> str:
    """HL7 v2.5+ prefers UTF-8; older Kyrgyz and Russian systems send Windows-1251.
    Latin-1 last, as it decodes anything, so no byte received is lost."""
    for encoding in ("utf-8", "cp1251"):
        try:
            return block.decode(encoding)
        except UnicodeDecodeError:
            continue
    return block.decode("latin-1")


def _unframe(block: bytes) -> bytes:
    # Anything before <VT> is line noise; a frame without <VT> is still read, not dropped.
    start = block.find(START_BLOCK)
    content = block[start + 1 :] if start >= 0 else block
    return content.removesuffix(BLOCK_END)


def _receive_blocking(raw: str, peer: str) -> tuple[int, str]:
    close_old_connections()
    try:
        with request_context(ip_address=peer, channel="hl7"):
            lab_message, ack = receive_oru(raw=raw, channel=LabMessage.Channel.MLLP, sender=peer)
        return lab_message.pk, ack
    finally:
        close_old_connections()


receive = sync_to_async(_receive_blocking, thread_sensitive=True)


class MllpListener:
    """Accepts connections, answers each message with its ACK, until `close()`."""

    def __init__(self, *, host: str, port: int, allowed_clients: Iterable[str]) -> None:
        self.host = host
        self.port = port
        self.allowed = parse_allowed_clients(allowed_clients)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Bind; raises OSError when the port is taken. Port 0 picks a free one."""
        self._server = await start_hl7_server(
            self._on_connection, self.host, self.port, limit=MAX_MESSAGE_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("HL7 MLLP listener on %s:%s", self.host, self.port)

    @property
    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _on_connection(self, reader: HL7StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _converse(self, reader: HL7StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        if not is_allowed(peer, self.allowed):
            # Refused before a byte is read: an unknown address can neither store nor probe.
            logger.warning("HL7 connection from %s refused: not in HL7_ALLOWED_CLIENTS", peer)
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Asyncio usually sets it already; an ACK held back by Nagle costs the lab ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                block = await reader.readuntil(BLOCK_END)
            except asyncio.IncompleteReadError as error:
                if error.partial.strip():
                    # Cut off mid-message: nobody is left to answer, but it is kept.
                    await receive(decode_block(_unframe(error.partial)), peer)
                return
            except asyncio.LimitOverrunError:
                logger.warning(
                    "HL7 message from %s over %d bytes: closing", peer, MAX_MESSAGE_BYTES
                )
                return
            _, ack = await receive(decode_block(_unframe(block)), peer)
            writer.write(START_BLOCK + ack.encode("utf-8") + BLOCK_END)
            await writer.drain()
