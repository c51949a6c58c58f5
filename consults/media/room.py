"""Room logic of the media broker: a plain class, no Django, testable without a browser.

One RTCPeerConnection per participant. The participant offers first (its audio and
video); the broker answers and receives them through the forwarding adapter (no
decoding). To send the others' tracks to a participant the broker adds sendonly
transceivers and makes its own offer, delivered through ``on_signal``; the participant
answers with ``peer.handle_answer``. Broker offers are made only when the participant's
connection is up and signaling is stable, one at a time, so a participant never receives
an offer before the broker's answer was applied. The client side must be "polite": if
its own offer crosses a broker offer it drops its own (aiortc cannot roll back).

One codec per session: VP8 for video, Opus for audio, set with setCodecPreferences.

Weak-link mode (``Peer.set_link_mode``): a participant on a poor link receives each video
as the room's low copy (consults/media/lowcopy.py), or no video at all; their tracks are
re-attached, so no renegotiation is needed. Audio is never touched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp

from consults.media import LINK_MODES
from consults.media.forwarding import (
    Publication,
    SubscriberTrack,
    align_header_extension_ids,
    align_payload_types,
    attach_subscriber,
    create_offer_keeping_codecs,
    make_forwarding_receiver,
)
from consults.media.lowcopy import LowCopies, LowCopy

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
CODEC_MIME = {"audio": "audio/opus", "video": "video/vp8"}

SignalCallback = Callable[[str, dict[str, Any]], Awaitable[None]]


def ice_ufrag(sdp: str) -> str | None:
    """The ICE username fragment of an SDP: a new RTCPeerConnection always has a new one."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :].strip()
    return None


def set_session_codec(transceiver: RTCRtpTransceiver) -> None:
    """Restrict a transceiver to the session codec (VP8 / Opus, with RTX for video)."""
    capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    wanted = CODEC_MIME[transceiver.kind]
    preferences = [c for c in capabilities if c.mimeType.lower() == wanted]
    preferences += [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]
    transceiver.setCodecPreferences(preferences)


class Peer:
    """The broker's side of one participant's connection."""

    def __init__(self, room: Room, key: str) -> None:
        self.room = room
        self.key = key
        # max-bundle: the transceivers added later for the others' tracks share the one
        # transport (with aiortc's "balanced", a first video transceiver towards an
        # audio-only participant would get a transport of its own that never connects).
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=list(room.ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
        self.publications: dict[str, Publication] = {}
        # (publisher key, kind) -> transceiver sending that publication to this peer
        self.subscriptions: dict[tuple[str, str], tuple[RTCRtpTransceiver, SubscriberTrack]] = {}
        # (publisher key, kind) -> the publication itself, whatever the track is attached to
        self._sources: dict[tuple[str, str], Publication] = {}
        self.link_mode = "normal"
        # senders no longer used (their publisher left), reused by the next subscription
        self._idle: list[tuple[RTCRtpTransceiver, SubscriberTrack]] = []
        self._negotiation_needed = False
        self._negotiating = False
        self._closed = False
        # Subscriptions are added once the participant's first offer is answered: aiortc
        # cannot answer an offer while it has transceivers that the offer did not match.
        self._answered = False

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState == "connected":
                await self._maybe_negotiate()
            elif self.pc.connectionState == "failed":
                await self.room._connection_failed(self)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    def is_new_connection(self, offer_sdp: str) -> bool:
        """Does this offer come from another RTCPeerConnection than the current one?"""
        remote = self.pc.remoteDescription
        return remote is not None and ice_ufrag(remote.sdp) != ice_ufrag(offer_sdp)

    async def handle_offer(self, sdp: str) -> str:
        """Apply the participant's offer; return the broker's answer SDP."""
        if self.pc.signalingState != "stable":
            # Our own offer is pending: the participant will receive it and must drop its
            # own offer (polite side), so this one is ignored.
            raise GlareError("the broker has an offer outstanding")
        # Receive slots for the offer's new m-lines, created before applying it so that they
        # carry the codec preferences (aiortc gives each new m-line the first transceiver of
        # its kind without a mid, and computes the codecs right then).
        known = {t.mid for t in self.pc.getTransceivers() if t.mid is not None}
        for media in SessionDescription.parse(sdp).media:
            if media.kind in KINDS and media.rtp.muxId not in known:
                set_session_codec(self.pc.addTransceiver(media.kind, direction="recvonly"))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        new: list[Publication] = []
        for transceiver in self.pc.getTransceivers():
            if (
                transceiver.receiver.track is not None
                and transceiver.kind in KINDS
                and transceiver.kind not in self.publications
                and not any(t is transceiver for t, _ in self.subscriptions.values())
            ):
                publication = make_forwarding_receiver(transceiver.receiver)
                self.publications[transceiver.kind] = publication
                new.append(publication)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._answered = True
        if new:
            self.room._published(self)
        self.room._subscribe_to_all(self)
        return self.pc.localDescription.sdp

    async def handle_answer(self, sdp: str) -> None:
        """Apply the participant's answer to a broker offer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._negotiating = False
        await self._maybe_negotiate()

    async def add_ice(self, candidate: dict[str, Any]) -> None:
        """Add a trickled ICE candidate ({"candidate", "sdpMid", "sdpMLineIndex"})."""
        line = candidate.get("candidate") or ""
        if not line:
            return  # end of candidates
        if line.startswith("candidate:"):
            line = line[len("candidate:") :]
        ice = candidate_from_sdp(line)
        ice.sdpMid = candidate.get("sdpMid")
        ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(ice)

    def set_link_mode(self, mode: str) -> None:
        """What this participant's link carries from now on.

        "normal": every track as published. "low": each video as the room's low copy of
        it (at most 320x240, 15 fps, ~150 kbit/s). "audio": no video. Audio is never
        changed. Applies at once to the current subscriptions (their tracks are
        re-attached, no renegotiation) and to later ones; it lasts across the
        participant's renegotiations, while a rejoin (``Room.join``) starts "normal".
        """
        if mode not in LINK_MODES:
            raise ValueError(f"unknown link mode {mode!r}")
        self.link_mode = mode
        if self._closed:
            return
        for key, (_transceiver, track) in list(self.subscriptions.items()):
            self._feed(track, self._sources[key])

    def _feed(self, track: SubscriberTrack, source: Publication) -> None:
        """Attach ``track`` to what the link mode sends of ``source``."""
        target: Publication | None = source
        if track.kind == "video" and self.link_mode == "low":
            target = self.room.low_copies.acquire(source)
        elif track.kind == "video" and self.link_mode == "audio":
            target = None
        previous = track.publication
        if previous is target:
            return
        if target is None:
            track.detach()  # the sender waits, sending nothing, until attached again
        else:
            # asks the new publication for a keyframe: the publisher when back to
            # "normal", the low copy's encoder when going "low"
            track.attach(target)
        self._release(previous)

    def _release(self, publication: Publication | None) -> None:
        if isinstance(publication, LowCopy):
            self.room.low_copies.release(publication)

    def subscribe(self, publisher: Peer, kind: str, publication: Publication) -> None:
        if (publisher.key, kind) in self.subscriptions or self._closed or not self._answered:
            return
        idle = next((slot for slot in self._idle if slot[1].kind == kind), None)
        if idle is not None:
            # Reuse a sender left by someone who left or reconnected (same m-line).
            self._idle.remove(idle)
            transceiver, track = idle
            transceiver.direction = "sendonly"
        else:
            track = SubscriberTrack(kind)
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            set_session_codec(transceiver)
            attach_subscriber(transceiver.sender, track)
        self.subscriptions[(publisher.key, kind)] = (transceiver, track)
        self._sources[(publisher.key, kind)] = publication
        self._feed(track, publication)
        self.renegotiate()

    def unsubscribe(self, publisher_key: str) -> None:
        for kind in KINDS:
            entry = self.subscriptions.pop((publisher_key, kind), None)
            if entry is None:
                continue
            del self._sources[(publisher_key, kind)]
            transceiver, track = entry
            previous = track.publication
            track.detach()
            self._release(previous)
            transceiver.direction = "inactive"
            self._idle.append(entry)
            self.renegotiate()

    def renegotiate(self) -> None:
        self._negotiation_needed = True
        asyncio.ensure_future(self._maybe_negotiate())

    async def _maybe_negotiate(self) -> None:
        if (
            self._closed
            or not self._negotiation_needed
            or self._negotiating
            or self.pc.connectionState != "connected"
            or self.pc.signalingState != "stable"
        ):
            return
        self._negotiating = True
        self._negotiation_needed = False
        try:
            offer = await create_offer_keeping_codecs(self.pc)
            if self.pc.remoteDescription is not None:
                offer = RTCSessionDescription(
                    sdp=align_payload_types(
                        align_header_extension_ids(offer.sdp, self.pc.remoteDescription.sdp),
                        self.pc.remoteDescription.sdp,
                    ),
                    type="offer",
                )
            await self.pc.setLocalDescription(offer)
        except Exception:  # e.g. closed meanwhile: this participant gets no more offers
            logger.exception("offer to participant %s failed", self.key)
            return
        await self.room._emit(self.key, {"type": "offer", "sdp": self.pc.localDescription.sdp})

    async def close(self) -> None:
        self._closed = True
        for publication in self.publications.values():
            publication.push(None)
        for _transceiver, track in [*self.subscriptions.values(), *self._idle]:
            previous = track.publication
            track.stop()
            self._release(previous)
        self.subscriptions.clear()
        self._sources.clear()
        self._idle.clear()
        await self.pc.close()


class GlareError(Exception):
    """The participant offered while a broker offer was outstanding."""


class Room:
    """The participants of one session and who receives whose media."""

    def __init__(
        self,
        ice_servers: list[RTCIceServer] | None = None,
        on_signal: SignalCallback | None = None,
    ) -> None:
        # An explicit list, never aiortc's default public STUN server.
        self.ice_servers: list[RTCIceServer] = list(ice_servers or [])
        self.on_signal = on_signal
        self.peers: dict[str, Peer] = {}
        self.low_copies = LowCopies()

    def join(self, key: str) -> Peer:
        """A participant joins (or rejoins: the old connection is dropped)."""
        old = self.peers.pop(key, None)
        if old is not None:
            # The others stop receiving the old connection now, so that the new one's
            # tracks are sent to them as new subscriptions.
            self._unsubscribe_others(old)
            asyncio.ensure_future(old.close())
        peer = Peer(self, key)
        self.peers[key] = peer
        return peer

    def peer(self, key: str) -> Peer | None:
        return self.peers.get(key)

    async def leave(self, key: str) -> None:
        peer = self.peers.pop(key, None)
        if peer is not None:
            await self._drop(peer)

    async def close(self) -> None:
        """End the session: every connection closes, nobody is renegotiated."""
        peers, self.peers = list(self.peers.values()), {}
        for peer in peers:
            await peer.close()
        self.low_copies.close()

    async def _drop(self, peer: Peer) -> None:
        self._unsubscribe_others(peer)
        await peer.close()

    def _unsubscribe_others(self, peer: Peer) -> None:
        for other in self.peers.values():
            if other is not peer:
                other.unsubscribe(peer.key)

    async def _connection_failed(self, peer: Peer) -> None:
        if self.peers.get(peer.key) is peer:  # not already replaced by a rejoin
            await self.leave(peer.key)

    def _published(self, publisher: Peer) -> None:
        for other in self.peers.values():
            if other is not publisher:
                for kind, publication in publisher.publications.items():
                    other.subscribe(publisher, kind, publication)

    def _subscribe_to_all(self, peer: Peer) -> None:
        for other in self.peers.values():
            if other is not peer:
                for kind, publication in other.publications.items():
                    peer.subscribe(other, kind, publication)

    async def _emit(self, key: str, signal: dict[str, Any]) -> None:
        if self.on_signal is not None:
            await self.on_signal(key, signal)
