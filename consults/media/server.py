"""The media broker process: takes its instructions from the channel layer.

Listens on the group ``media.rooms`` for
``{"type": "media.signal", "appointment_id", "participant_key", "signal": {...}}`` where
``signal`` is one of

- ``{"type": "offer", "sdp": ..., "restart": bool}``: the participant's offer. With
  ``restart`` true (a fresh RTCPeerConnection in the browser, e.g. after reconnecting) the
  participant's previous connection is dropped first, as it is when the offer's ICE
  credentials differ from the current connection's (a new RTCPeerConnection); otherwise
  the offer renegotiates the existing connection, or starts one.
- ``{"type": "answer", "sdp": ...}``: the answer to a broker offer.
- ``{"type": "ice", "candidate": {"candidate", "sdpMid", "sdpMLineIndex"}}``.
- ``{"type": "link", "mode": "normal"|"low"|"audio"}``: what the participant's link
  carries (``Peer.set_link_mode``); kept for their later connections in this room.
- ``{"type": "leave"}``.
- ``{"type": "record", "action": "start", "recording_id": N, "directory": path}``: record
  the room (consults/media/recorder.py) into ``directory`` (the web side sends
  ``RECORDING_DIR/<N>``; without it, the server's ``recording_dir``/N): every publication of
  the room now, and those that appear later while recording, packet for packet.
- ``{"type": "record", "action": "stop", "recording_id": N}``: close the files.

A recording also stops when its room empties and when the broker stops. Whenever one stops,
the broker writes ``manifest.json`` into its directory and calls ``on_recording_done(
recording_id, manifest)``; by default that queues the Celery task
``consults.recording_tasks.compose_recording(recording_id)`` (the only Django the broker
touches, imported when first needed), which composes the MP4 from the files. The broker
and the worker must therefore see the same disk (settings.RECORDING_DIR).

and answers on the group ``session.<appointment_id>`` with
``{"type": "media.reply", "appointment_id", "participant_key", "signal": {...}}``, where
``signal`` is ``{"type": "answer"|"offer", "sdp": ...}`` or
``{"type": "error", "code": ..., "message": ...}``. The broker's SDP carries all of its ICE
candidates (aiortc does not trickle), so it never sends ``ice``.

Several brokers may serve one site: every broker hears every signal, and a room is served
by the broker holding its claim in the shared cache (``claims``, consults/media/claims.py);
the others ignore it. A broker that dies loses its claims after their time to live, and its
rooms move to the broker that sees their next signal (browsers reconnect by themselves).

No Django here: the management command ``mediaserver`` builds the channel layer, the cache
claims and the ICE servers from settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiortc import RTCIceServer

from consults.media import LINK_MODES
from consults.media.claims import RoomClaims
from consults.media.recorder import Recorder
from consults.media.room import GlareError, Room

logger = logging.getLogger(__name__)

CONTROL_GROUP = "media.rooms"


def session_group(appointment_id: Any) -> str:
    return f"session.{appointment_id}"


RecordingDone = Callable[[int, dict[str, Any]], Awaitable[None]]


async def queue_composition(recording_id: int, manifest: dict[str, Any]) -> None:
    """The default ``on_recording_done``: the worker composes the MP4."""

    def queue() -> None:
        from consults.recording_tasks import compose_recording

        compose_recording.delay(recording_id)

    await asyncio.to_thread(queue)


class MediaServer:
    def __init__(
        self,
        channel_layer: Any,
        ice_servers: list[RTCIceServer] | Callable[[], list[RTCIceServer]] | None = None,
        *,
        recording_dir: Path | str | None = None,
        on_recording_done: RecordingDone | None = None,
        claims: RoomClaims | None = None,
    ) -> None:
        self.layer = channel_layer
        # With several brokers per site, each room is served by the one holding its claim
        # (consults/media/claims.py); without claims this broker serves every room.
        self.claims = claims
        self.recording_dir = Path(recording_dir) if recording_dir is not None else None
        self.on_recording_done: RecordingDone = on_recording_done or queue_composition
        # appointment id -> the recorder of that room while it records
        self.recorders: dict[str, Recorder] = {}
        # A list, or a function called for each new room (short-lived TURN credentials).
        self.ice_servers = ice_servers if callable(ice_servers) else list(ice_servers or [])
        self.rooms: dict[str, Room] = {}
        self.channel_name: str | None = None
        self._stopping = asyncio.Event()
        # Messages of one session are applied in order; sessions do not wait for each other.
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # (appointment id, participant key) -> link mode asked for ("low", "audio", ...)
        self._link_modes: dict[tuple[str, str], str] = {}

    async def run(self) -> None:
        """Serve until :meth:`stop`."""
        self.channel_name = await self.layer.new_channel("media.broker.")
        await self.layer.group_add(CONTROL_GROUP, self.channel_name)
        renewing = asyncio.ensure_future(self._renew_claims()) if self.claims else None
        try:
            while not self._stopping.is_set():
                receive = asyncio.ensure_future(self.layer.receive(self.channel_name))
                stop = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    break
                stop.cancel()
                self._spawn(receive.result())
        finally:
            if renewing is not None:
                renewing.cancel()
            for task in list(self._tasks):
                task.cancel()
            await self.layer.group_discard(CONTROL_GROUP, self.channel_name)
            for appointment_id in list(self.recorders):
                await self._stop_recording(appointment_id)
            for room in list(self.rooms.values()):
                await room.close()
            if self.claims is not None:
                for appointment_id in list(self.rooms):
                    await self.claims.release(appointment_id)
            self.rooms.clear()

    async def _renew_claims(self) -> None:
        assert self.claims is not None
        while True:
            await asyncio.sleep(self.claims.ttl / 3)
            try:
                lost = await self.claims.renew(list(self.rooms))
            except Exception:  # a cache hiccup: try again at the next turn
                logger.exception("could not renew the claims on this broker's rooms")
                continue
            for appointment_id in lost:
                # Another broker serves it now (this one stalled past the claim's life): its
                # participants reconnect there by themselves.
                logger.warning("room %s was taken over by another broker", appointment_id)
                lock = self._locks.setdefault(appointment_id, asyncio.Lock())
                async with lock:
                    await self._stop_recording(appointment_id)
                    room = self.rooms.pop(appointment_id, None)
                    if room is not None:
                        await room.close()

    def _spawn(self, message: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        self._stopping.set()

    async def handle(self, message: dict[str, Any]) -> None:
        if message.get("type") != "media.signal":
            return
        appointment_id = message.get("appointment_id")
        key = message.get("participant_key")
        signal = message.get("signal")
        if appointment_id is None or not isinstance(key, str) or not isinstance(signal, dict):
            logger.warning("malformed media.signal: %r", message)
            return
        if self.claims is not None and str(appointment_id) not in self.rooms:
            if signal.get("type") == "leave":
                return  # nothing of it here
            if not await self.claims.claim(str(appointment_id)):
                return  # another broker serves this room
        lock = self._locks.setdefault(str(appointment_id), asyncio.Lock())
        try:
            async with lock:
                await self._apply(str(appointment_id), key, signal)
        except GlareError:
            await self._reply(str(appointment_id), key, _error("glare", "offer collision"))
        except Exception:  # one participant's bad SDP must not stop the broker
            logger.exception("media signal failed")
            # The details stay in the log; the browser learns only that it failed.
            await self._reply(str(appointment_id), key, _error("failed", "media signal failed"))

    async def _apply(self, appointment_id: str, key: str, signal: dict[str, Any]) -> None:
        kind = signal.get("type")
        if kind == "leave":
            room = self.rooms.get(appointment_id)
            if room is not None:
                await room.leave(key)
                if not room.peers:
                    await self._stop_recording(appointment_id)
                    del self.rooms[appointment_id]
                    self._locks.pop(appointment_id, None)
                    if self.claims is not None:
                        await self.claims.release(appointment_id)
                    for gone in [k for k in self._link_modes if k[0] == appointment_id]:
                        del self._link_modes[gone]
            return
        room = self._room(appointment_id)
        if kind == "offer":
            peer = room.peer(key)
            sdp = str(signal["sdp"])
            if peer is None or signal.get("restart") or peer.is_new_connection(sdp):
                peer = room.join(key)
                if (appointment_id, key) in self._link_modes:
                    peer.set_link_mode(self._link_modes[(appointment_id, key)])
            answer = await peer.handle_offer(sdp)
            self._record_new_publications(appointment_id)
            await self._reply(appointment_id, key, {"type": "answer", "sdp": answer})
        elif kind == "answer":
            peer = room.peer(key)
            if peer is None:
                return  # an answer that crossed the participant's leave
            await peer.handle_answer(str(signal["sdp"]))
        elif kind == "ice":
            peer = room.peer(key)
            if peer is not None and isinstance(signal.get("candidate"), dict):
                await peer.add_ice(signal["candidate"])
        elif kind == "link":
            # Kept for the participant's next connection too (a rejoin after a dropped link).
            mode = str(signal.get("mode"))
            if mode not in LINK_MODES:
                await self._reply(appointment_id, key, _error("unknown", f"no link mode {mode!r}"))
                return
            self._link_modes[(appointment_id, key)] = mode
            peer = room.peer(key)
            if peer is not None:
                peer.set_link_mode(mode)
        elif kind == "record":
            await self._record(appointment_id, signal)
        else:
            await self._reply(appointment_id, key, _error("unknown", f"unknown signal {kind!r}"))

    # --- recording ------------------------------------------------------------------------

    async def _record(self, appointment_id: str, signal: dict[str, Any]) -> None:
        recording_id = int(signal["recording_id"])
        if signal.get("action") == "stop":
            recorder = self.recorders.get(appointment_id)
            if recorder is not None and recorder.recording_id == recording_id:
                await self._stop_recording(appointment_id)
            return
        current = self.recorders.get(appointment_id)
        if current is not None:
            if current.recording_id == recording_id:
                return  # a repeated start
            await self._stop_recording(appointment_id)
        directory = signal.get("directory")
        if directory is None:
            if self.recording_dir is None:
                raise ValueError("no directory to record into")
            directory = self.recording_dir / str(recording_id)
        self.recorders[appointment_id] = Recorder(recording_id, directory)
        self._record_new_publications(appointment_id)

    def _record_new_publications(self, appointment_id: str) -> None:
        recorder = self.recorders.get(appointment_id)
        room = self.rooms.get(appointment_id)
        if recorder is None or room is None:
            return
        for peer in room.peers.values():
            for publication in peer.publications.values():
                recorder.add(peer.key, publication)

    async def _stop_recording(self, appointment_id: str) -> None:
        recorder = self.recorders.pop(appointment_id, None)
        if recorder is None:
            return
        manifest = await recorder.stop()
        try:
            await self.on_recording_done(recorder.recording_id, manifest)
        except Exception:  # the files stay on disk: the task can be queued again
            logger.exception("recording %s: could not queue its composition", recorder.recording_id)

    def _room(self, appointment_id: str) -> Room:
        room = self.rooms.get(appointment_id)
        if room is None:

            async def on_signal(key: str, signal: dict[str, Any]) -> None:
                await self._reply(appointment_id, key, signal)

            servers = self.ice_servers() if callable(self.ice_servers) else self.ice_servers
            room = self.rooms[appointment_id] = Room(servers, on_signal=on_signal)
        return room

    async def _reply(self, appointment_id: str, key: str, signal: dict[str, Any]) -> None:
        await self.layer.group_send(
            session_group(appointment_id),
            {
                "type": "media.reply",
                "appointment_id": appointment_id,
                "participant_key": key,
                "signal": signal,
            },
        )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
