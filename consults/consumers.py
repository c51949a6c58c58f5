"""The signaling socket of a video session: `ws/sessions/<appointment_id>/`.

Thin on purpose: who the socket is, what a message means and whether it is allowed are
decided in consults/services/signaling.py. The only state here is this socket's own:
who it speaks for and their last known state, to filter what it forwards.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation

from accounts.request_context import request_context
from consults.models import SessionPresence
from consults.services.signaling import (
    MEDIA_GROUP,
    BadSignal,
    Member,
    Outcome,
    SignalRefused,
    chat_history,
    handle_signal,
    join_keys_of,
    leave_on_disconnect,
    member_for,
    parse_signal,
    session_group,
)

# Close code in the private range: the page's script stops reconnecting on it.
NOT_A_PARTICIPANT = 4403
ADMITTED = SessionPresence.State.ADMITTED


def _member_from_scope(scope: dict[str, Any], appointment_id: int) -> Member | None:
    return member_for(
        appointment_id=appointment_id,
        user=scope.get("user"),
        join_session=join_keys_of(scope.get("session")),
    )


def _language(scope: dict[str, Any]) -> str:
    """The language errors are written in: the user's own, else the page's language cookie."""
    user = scope.get("user")
    chosen = getattr(user, "language", "") if user is not None and user.is_authenticated else ""
    chosen = chosen or scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")
    return chosen if chosen in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _handle(
    member: Member, content: Any, channel_name: str, ip_address: str | None, language: str
) -> Outcome:
    with (
        translation.override(language),
        request_context(ip_address=ip_address, channel="websocket"),
    ):
        signal = parse_signal(content)
        return handle_signal(member=member, signal=signal, channel_name=channel_name)


class SessionConsumer(AsyncJsonWebsocketConsumer):
    member: Member | None = None
    state: str | None = None

    async def connect(self) -> None:
        appointment_id = int(self.scope["url_route"]["kwargs"]["appointment_id"])
        self.member = await database_sync_to_async(_member_from_scope)(self.scope, appointment_id)
        if self.member is None:
            await self.close(code=NOT_A_PARTICIPANT)
            return
        self.language = _language(self.scope)
        self.group = session_group(appointment_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.member is None:
            return
        await self.channel_layer.group_discard(self.group, self.channel_name)
        outcome = await database_sync_to_async(leave_on_disconnect)(
            member=self.member, channel_name=self.channel_name
        )
        if outcome is not None:
            await self._relay(outcome)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Malformed input is answered, never fatal: a phone's half-sent message must not
        # cost it the call.
        try:
            content = await self.decode_json(text_data or "")
        except ValueError:
            content = None  # parse_signal answers it, in the socket's language
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        assert self.member is not None
        try:
            client = self.scope.get("client") or [None]
            outcome = await database_sync_to_async(_handle)(
                self.member, content, self.channel_name, client[0], self.language
            )
        except (BadSignal, SignalRefused) as problem:
            await self._error(problem.message)
            if isinstance(problem, SignalRefused) and problem.is_final:
                await self.close(code=NOT_A_PARTICIPANT)
            return
        if outcome.reply is not None:
            if outcome.reply.get("type") == "joined":
                self.state = outcome.reply["state"]
            await self.send_json(outcome.reply)
        if outcome.is_leaving:
            self.state = None
        await self._relay(outcome)

    async def _relay(self, outcome: Outcome) -> None:
        for event in outcome.to_session:
            await self.channel_layer.group_send(self.group, event)
        if outcome.to_media is not None:
            await self.channel_layer.group_send(MEDIA_GROUP, outcome.to_media)

    async def _error(self, message: str) -> None:
        await self.send_json({"type": "error", "message": message})

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, ensure_ascii=False)

    # --- events from the channel layer ------------------------------------------------------

    async def session_participants(self, event: dict[str, Any]) -> None:
        assert self.member is not None
        was = self.state
        if self.state is not None:  # joined on this socket
            for person in event["participants"]:
                if person["participant_key"] == self.member.key:
                    self.state = person["state"]
        await self.send_json(
            {"type": "participants", "state": self.state, "participants": event["participants"]}
        )
        if was != ADMITTED and self.state == ADMITTED:
            # Just admitted from the waiting room: what was said before, for context.
            history = await database_sync_to_async(chat_history)(self.member.appointment_id)
            await self.send_json({"type": "chat.history", "messages": history})

    async def session_chat(self, event: dict[str, Any]) -> None:
        # The waiting room does not hear the call's chat.
        if self.state == ADMITTED:
            await self.send_json({"type": "chat", "message": event["message"]})

    async def session_quality(self, event: dict[str, Any]) -> None:
        assert self.member is not None
        if self.state == ADMITTED and event["participant_key"] != self.member.key:
            await self.send_json(
                {
                    "type": "quality",
                    "participant_key": event["participant_key"],
                    "stats": event["stats"],
                }
            )

    async def session_status(self, event: dict[str, Any]) -> None:
        # Someone's link mode or screen sharing, for the others' participant lists.
        if self.state == ADMITTED:
            status = {k: v for k, v in event.items() if k in ("participant_key", "link", "screen")}
            await self.send_json({"type": "status", **status})

    async def session_recording(self, event: dict[str, Any]) -> None:
        # Recording on or off, who consents, why it stopped (consults/services/recording.py).
        if self.state == ADMITTED:
            keys = ("recording", "recording_id", "started_by", "consents", "reason", "as_of")
            await self.send_json({"type": "recording", **{k: event[k] for k in keys}})

    async def media_reply(self, event: dict[str, Any]) -> None:
        # The broker answers one participant's peer connection: only that socket gets it.
        assert self.member is not None
        if event.get("participant_key") == self.member.key:
            await self.send_json({"type": "media", "signal": event["signal"]})
