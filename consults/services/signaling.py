"""Signaling of a video session: who may be on its socket, what each message may do.

The consumer (consults/consumers.py) stays thin: it asks `member_for` who the socket is,
parses each message with `parse_signal`, and hands it to `handle_signal`, which authorizes
it (`authorize_signal`), applies it to the database, and says what to send to whom.

Messages from a browser (JSON objects with a `type`):

    join                         enter the session (a patient enters the waiting room)
    leave                        leave it
    chat      text               a chat line, saved with the consult
    mute      audio?, video?     microphone / camera state (booleans)
    admit     participant_key    clinician side only: let a waiting person in
    decline   participant_key    clinician side only: turn a waiting person away
    offer     sdp                WebRTC with the media broker
    answer    sdp
    ice       candidate          an RTCIceCandidateInit object, or null (end of candidates)
    quality   stats              measured link figures: {name: number}
    link      mode               what this member's link carries: "normal", "low" (the broker
                                 sends them a low copy of the others' video) or "audio" (no
                                 video at all); told to the broker and to the others
    screen    on                 this member shares their screen instead of the camera
    ping                         keeps proxies from dropping an idle socket
    consent   given              this member consents to recording the call (or withdraws)
    record    action             clinician side only: "start" (only when everyone in the call
                                 consented) or "stop" recording; see services/recording.py
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from consults.media import LINK_MODES
from consults.models import Appointment, ChatMessage, Participant, SessionPresence
from consults.services import recording
from consults.services.links import CLOSES_AFTER, OPENS_BEFORE, held_join_link
from consults.services.sessions import start_session

Role = Participant.Role
State = SessionPresence.State

MAX_CHAT_CHARS = 2000
# An SDP of a few tracks is 3-8 kB; this leaves room and still stops a flood.
MAX_SDP_CHARS = 64_000
MAX_CANDIDATE_CHARS = 2_000
MAX_STATS = 20
CHAT_HISTORY = 200

CLINICIAN_SIDE = frozenset({Role.SPECIALIST, Role.CLINICIAN})
MEDIA_TYPES = frozenset({"offer", "answer", "ice"})
# What someone in the waiting room (or turned away) may still send.
BEFORE_ADMISSION = frozenset({"join", "leave", "quality", "ping"})

# What consults/join_views.py leaves in a browser's session when a patient joins by link.
JOIN_SESSION_KEYS = ("join_appointment_id", "join_participant_id", "join_link_id")


def join_keys_of(session: Any) -> dict[str, Any]:
    """The join keys a link left in a browser's session (a request's or a socket's scope's),
    as `member_for` takes them; empty without a session."""
    if session is None:
        return {}
    return {key: session.get(key) for key in JOIN_SESSION_KEYS}


# The channel-layer group every media broker instance listens on.
MEDIA_GROUP = "media.rooms"


def session_group(appointment_id: int) -> str:
    return f"session.{appointment_id}"


class BadSignal(ValueError):
    """A message that is not a well-formed signal; `message` says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignalRefused(PermissionDenied):
    """A well-formed signal this member may not send now; `message` says why.

    `is_final` when the member is no longer allowed in the session at all."""

    def __init__(self, message: str, *, is_final: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.is_final = is_final


@dataclass(frozen=True)
class Member:
    """Who is on one socket of one session."""

    appointment_id: int
    key: str  # "user:<id>" or "participant:<id>": stable across reconnections
    name: str
    role: str
    user_id: int | None = None
    participant_id: int | None = None
    link_id: int | None = None  # set for someone who came by a join link

    @property
    def is_clinician_side(self) -> bool:
        return self.role in CLINICIAN_SIDE


@dataclass(frozen=True)
class Signal:
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


@dataclass
class Outcome:
    """What the consumer sends after a signal: to the sender, to the session, to the broker."""

    reply: dict[str, Any] | None = None
    to_session: list[dict[str, Any]] = field(default_factory=list)
    to_media: dict[str, Any] | None = None
    is_leaving: bool = False


# --- who may be on the socket -----------------------------------------------------------------


def user_key(user_id: int) -> str:
    return f"user:{user_id}"


def participant_key(participant_id: int) -> str:
    return f"participant:{participant_id}"


def member_for(
    *,
    appointment_id: int,
    user: User | None = None,
    join_session: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> Member | None:
    """The member a socket (or a page request) speaks for, or None for a stranger.

    A logged-in user is a member as the appointment's specialist, its referral's referring
    clinician, or an invited participant. Without an account, the join keys a link left in
    the browser's session (consults/join_views.py) count while that link still holds: not
    replaced, its participant still invited, the appointment neither cancelled nor over, and
    within the link's window. A cancelled or completed appointment has no members.
    """
    at = at or timezone.now()
    appointment = (
        Appointment.objects.select_related("referral", "specialist")
        .filter(pk=appointment_id, status=Appointment.Status.BOOKED)
        .first()
    )
    if appointment is None:
        return None
    member = None
    if user is not None and user.is_authenticated and user.is_active:
        member = _user_member(appointment, user)
    if member is None and join_session:
        member = _link_member(appointment, join_session, at)
    return member


def _user_member(appointment: Appointment, user: User) -> Member | None:
    role: str | None = None
    if appointment.specialist_id == user.pk:
        role = Role.SPECIALIST
    elif appointment.referral.referring_clinician_id == user.pk:
        role = Role.CLINICIAN
    else:
        invited = appointment.participants.filter(user=user, is_active=True).first()
        role = invited.role if invited else None
    if role is None:
        return None
    return Member(
        appointment_id=appointment.pk,
        key=user_key(user.pk),
        name=str(user),
        role=role,
        user_id=user.pk,
    )


def _link_member(
    appointment: Appointment, join_session: dict[str, Any], at: dt.datetime
) -> Member | None:
    # The same keys, and the same re-check, as the join pages' _joined_participant.
    if join_session.get("join_appointment_id") != appointment.pk:
        return None
    link = held_join_link(
        appointment_id=appointment.pk,
        link_id=join_session.get("join_link_id"),
        participant_id=join_session.get("join_participant_id"),
    )
    if link is None:
        return None
    if not appointment.starts_at - OPENS_BEFORE <= at <= appointment.ends_at + CLOSES_AFTER:
        return None
    participant = link.participant
    return Member(
        appointment_id=appointment.pk,
        key=participant_key(participant.pk),
        name=participant.name,
        role=participant.role,
        participant_id=participant.pk,
        link_id=link.pk,
    )


def _still_member(member: Member) -> bool:
    """Re-checked on every message: a link replaced or an appointment cancelled mid-call
    ends that person's access at once."""
    if member.user_id is not None:
        user = User.objects.filter(pk=member.user_id).first()
        again = member_for(appointment_id=member.appointment_id, user=user)
    else:
        again = member_for(
            appointment_id=member.appointment_id,
            join_session={
                "join_appointment_id": member.appointment_id,
                "join_link_id": member.link_id,
                "join_participant_id": member.participant_id,
            },
        )
    return again is not None and again.key == member.key and again.role == member.role


# --- parsing ----------------------------------------------------------------------------------


def _text(content: dict[str, Any], name: str, *, limit: int) -> str:
    if name not in content:
        raise BadSignal(_("Field “%(field)s” is missing.") % {"field": name})
    value = content[name]
    if not isinstance(value, str):
        raise BadSignal(_("Field “%(field)s” must be text.") % {"field": name})
    if len(value) > limit:
        raise BadSignal(
            _("Field “%(field)s” is too long (at most %(limit)d characters).")
            % {"field": name, "limit": limit}
        )
    return value


def _flag(content: dict[str, Any], name: str) -> bool | None:
    value = content.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadSignal(_("Field “%(field)s” must be true or false.") % {"field": name})
    return value


def _parse_chat(content: dict[str, Any]) -> dict[str, Any]:
    text = _text(content, "text", limit=MAX_CHAT_CHARS).strip()
    if not text:
        raise BadSignal(_("A chat message cannot be empty."))
    return {"text": text}


def _parse_mute(content: dict[str, Any]) -> dict[str, Any]:
    audio, video = _flag(content, "audio"), _flag(content, "video")
    if audio is None and video is None:
        raise BadSignal(_("Field “audio” or “video” is missing."))
    return {
        name: value for name, value in (("audio", audio), ("video", video)) if value is not None
    }


def _parse_target(content: dict[str, Any]) -> dict[str, Any]:
    return {"participant_key": _text(content, "participant_key", limit=64)}


def _parse_sdp(content: dict[str, Any]) -> dict[str, Any]:
    return {"sdp": _text(content, "sdp", limit=MAX_SDP_CHARS)}


def _parse_ice(content: dict[str, Any]) -> dict[str, Any]:
    if "candidate" not in content:
        raise BadSignal(_("Field “%(field)s” is missing.") % {"field": "candidate"})
    candidate = content["candidate"]
    if candidate is None:  # the browser's end-of-candidates
        return {"candidate": None}
    if not isinstance(candidate, dict):
        raise BadSignal(_("Field “candidate” must be an object or null."))
    line = _text(candidate, "candidate", limit=MAX_CANDIDATE_CHARS)
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 64):
        raise BadSignal(_("Field “sdpMid” must be short text."))
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise BadSignal(_("Field “sdpMLineIndex” must be a number."))
    return {"candidate": {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}}


def _parse_quality(content: dict[str, Any]) -> dict[str, Any]:
    stats = content.get("stats")
    if not isinstance(stats, dict):
        raise BadSignal(_("Field “stats” must be an object of numbers."))
    if len(stats) > MAX_STATS:
        raise BadSignal(_("Too many figures in “stats”."))
    for name, value in stats.items():
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if len(name) > 32 or not is_number:
            raise BadSignal(_("Field “stats” must be an object of numbers."))
    return {"stats": stats}


def _parse_link(content: dict[str, Any]) -> dict[str, Any]:
    mode = content.get("mode")
    if mode not in LINK_MODES:
        raise BadSignal(
            _("Field “mode” must be one of: %(modes)s.") % {"modes": ", ".join(LINK_MODES)}
        )
    return {"mode": mode}


def _parse_screen(content: dict[str, Any]) -> dict[str, Any]:
    on = _flag(content, "on")
    if on is None:
        raise BadSignal(_("Field “%(field)s” is missing.") % {"field": "on"})
    return {"on": on}


def _parse_consent(content: dict[str, Any]) -> dict[str, Any]:
    given = _flag(content, "given")
    if given is None:
        raise BadSignal(_("Field “%(field)s” is missing.") % {"field": "given"})
    return {"given": given}


def _parse_record(content: dict[str, Any]) -> dict[str, Any]:
    action = content.get("action")
    if action not in ("start", "stop"):
        raise BadSignal(_("Field “action” must be “start” or “stop”."))
    return {"action": action}


def _nothing(content: dict[str, Any]) -> dict[str, Any]:
    return {}


PARSERS = {
    "join": _nothing,
    "leave": _nothing,
    "ping": _nothing,
    "chat": _parse_chat,
    "mute": _parse_mute,
    "admit": _parse_target,
    "decline": _parse_target,
    "offer": _parse_sdp,
    "answer": _parse_sdp,
    "ice": _parse_ice,
    "quality": _parse_quality,
    "link": _parse_link,
    "screen": _parse_screen,
    "consent": _parse_consent,
    "record": _parse_record,
}


def parse_signal(content: Any) -> Signal:
    """A browser's message as a `Signal`; raises `BadSignal` saying what is wrong."""
    if not isinstance(content, dict):
        raise BadSignal(_("A message must be a JSON object with a “type”."))
    kind = content.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadSignal(_("Field “type” is missing."))
    parser = PARSERS.get(kind)
    if parser is None:
        raise BadSignal(_("Unknown message type “%(type)s”.") % {"type": kind[:32]})
    return Signal(type=kind, data=parser(content))


# --- authorizing and applying -----------------------------------------------------------------


def _presence(member: Member, *, lock: bool = False) -> SessionPresence | None:
    rows = SessionPresence.objects.filter(
        appointment_id=member.appointment_id, participant_key=member.key
    )
    return (rows.select_for_update() if lock else rows).first()


def authorize_signal(*, member: Member, signal: Signal) -> SessionPresence | None:
    """May `member` send `signal` now? Raises `SignalRefused` with the reason; returns the
    member's place in the session (None before they join)."""
    presence = _presence(member, lock=True)
    if signal.type in ("join", "ping"):
        return presence
    if presence is None or presence.state == State.LEFT:
        raise SignalRefused(_("Join the session first."))
    if presence.state == State.DECLINED and signal.type not in BEFORE_ADMISSION:
        raise SignalRefused(_("The doctor did not admit you to this session."))
    if presence.state == State.WAITING and signal.type not in BEFORE_ADMISSION:
        raise SignalRefused(_("Please wait: the doctor will admit you."))
    if signal.type in ("admit", "decline"):
        if not member.is_clinician_side:
            raise SignalRefused(_("Only the doctors of this session admit participants."))
        target = SessionPresence.objects.filter(
            appointment_id=member.appointment_id,
            participant_key=signal.data["participant_key"],
            state=State.WAITING,
        ).first()
        if target is None:
            raise SignalRefused(_("Nobody with this key is waiting to be admitted."))
    return presence


@transaction.atomic
def handle_signal(*, member: Member, signal: Signal, channel_name: str = "") -> Outcome:
    """Authorize `signal` from `member` and apply it; what to send is in the `Outcome`.

    Raises `SignalRefused` (`is_final` when the member has lost access to the session)."""
    if not _still_member(member):
        raise SignalRefused(_("You are no longer a participant of this session."), is_final=True)
    presence = authorize_signal(member=member, signal=signal)
    if signal.type == "ping":
        return Outcome(reply={"type": "pong"})
    handler = APPLIERS[signal.type]
    return _recording_follows(member, signal, handler(member, signal, presence, channel_name))


def participants_of(appointment_id: int) -> list[dict[str, Any]]:
    """Everyone who joined the session and their state, as the page shows them."""
    return [
        {
            "participant_key": presence.participant_key,
            "name": presence.name,
            "role": presence.role,
            "is_clinician": presence.role in CLINICIAN_SIDE,
            "state": presence.state,
            "audio": presence.audio_on,
            "video": presence.video_on,
        }
        for presence in SessionPresence.objects.filter(appointment_id=appointment_id)
    ]


def _participants_event(appointment_id: int) -> dict[str, Any]:
    return {"type": "session.participants", "participants": participants_of(appointment_id)}


def chat_history(appointment_id: int) -> list[dict[str, Any]]:
    messages = ChatMessage.objects.filter(appointment_id=appointment_id).order_by("-sent_at", "-id")
    return [_chat_dict(message) for message in reversed(messages[:CHAT_HISTORY])]


def _chat_dict(message: ChatMessage) -> dict[str, Any]:
    if message.author_user_id:
        author_key = user_key(message.author_user_id)
    elif message.author_participant_id:
        author_key = participant_key(message.author_participant_id)
    else:
        author_key = ""
    return {
        "id": message.pk,
        "author_key": author_key,
        "author": message.author_name,
        "text": message.text,
        "sent_at": message.sent_at.isoformat(),
    }


def _apply_join(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    now = timezone.now()
    if presence is None:
        presence = SessionPresence(
            appointment_id=member.appointment_id,
            participant_key=member.key,
            user_id=member.user_id,
            participant_id=member.participant_id,
        )
    presence.name, presence.role, presence.channel_name = member.name, member.role, channel_name
    if presence.state == State.DECLINED:
        pass  # turned away for this session: joining again does not reopen the door
    elif member.is_clinician_side or presence.admitted_at is not None:
        # Clinicians are in at once; an admitted patient coming back (a dropped link) too.
        presence.state = State.ADMITTED
        presence.admitted_at = presence.admitted_at or now
    else:
        presence.state = State.WAITING
    presence.save()
    _audit_join(member)
    if member.role == Role.SPECIALIST:
        _open_session(member)
    reply: dict[str, Any] = {
        "type": "joined",
        "participant_key": member.key,
        "state": presence.state,
        "participants": participants_of(member.appointment_id),
    }
    if presence.state == State.ADMITTED:
        reply["chat"] = chat_history(member.appointment_id)
    return Outcome(reply=reply, to_session=[_participants_event(member.appointment_id)])


def _audit_join(member: Member) -> None:
    # The call shows the patient and the chat kept with their consult: a read of patient data.
    appointment = Appointment.objects.select_related("referral").get(pk=member.appointment_id)
    record_event(
        actor=User.objects.get(pk=member.user_id) if member.user_id else None,
        actor_label=member.name,
        action=AuditEvent.Action.VIEW,
        target=appointment,
        patient_id=appointment.referral.patient_id,
        region=appointment.referral.region,
        detail={"session_join": member.key},
    )


def _open_session(member: Member) -> None:
    # The specialist's join opens the session (the referral goes "in session"), if the
    # appointment is in its window; start_session is a no-op the second time.
    appointment = Appointment.objects.get(pk=member.appointment_id)
    if not appointment.is_joinable_at(timezone.now()):
        return
    specialist = User.objects.get(pk=member.user_id)
    # If the window closed between the check and the call, the call still goes on.
    with contextlib.suppress(ValidationError):
        start_session(appointment=appointment, specialist=specialist)


def _apply_leave(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    assert presence is not None
    if presence.state != State.DECLINED:
        presence.state = State.LEFT
    presence.channel_name = ""
    presence.save(update_fields=["state", "channel_name", "updated_at"])
    return Outcome(
        reply={"type": "left"},
        to_session=[_participants_event(member.appointment_id)],
        to_media=_media_event(member, Signal(type="leave")),
        is_leaving=True,
    )


def leave_on_disconnect(*, member: Member, channel_name: str) -> Outcome | None:
    """The socket closed without "leave" (network drop, tab closed): the member is shown as
    gone, unless a newer socket of theirs already took their place."""
    with transaction.atomic():
        presence = _presence(member, lock=True)
        if presence is None or presence.channel_name != channel_name:
            return None
        outcome = _apply_leave(member, Signal(type="leave"), presence, channel_name)
        return _recording_follows(member, Signal(type="leave"), outcome)


def _apply_chat(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    message = ChatMessage.objects.create(
        appointment_id=member.appointment_id,
        author_user_id=member.user_id,
        author_participant_id=member.participant_id,
        author_name=member.name,
        text=signal.data["text"],
    )
    return Outcome(to_session=[{"type": "session.chat", "message": _chat_dict(message)}])


def _apply_mute(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    assert presence is not None
    presence.audio_on = signal.data.get("audio", presence.audio_on)
    presence.video_on = signal.data.get("video", presence.video_on)
    presence.save(update_fields=["audio_on", "video_on", "updated_at"])
    return Outcome(to_session=[_participants_event(member.appointment_id)])


def _apply_admission(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    is_admitted = signal.type == "admit"
    # Locked and re-checked: two clinicians answering at once must not decline a patient the
    # other has just admitted (the first answer wins).
    target = (
        SessionPresence.objects.select_for_update()
        .filter(
            appointment_id=member.appointment_id,
            participant_key=signal.data["participant_key"],
            state=State.WAITING,
        )
        .first()
    )
    if target is None:
        raise SignalRefused(_("Nobody with this key is waiting to be admitted."))
    target.state = State.ADMITTED if is_admitted else State.DECLINED
    if is_admitted:
        target.admitted_at = timezone.now()
    target.save(update_fields=["state", "admitted_at", "updated_at"])
    return Outcome(to_session=[_participants_event(member.appointment_id)])


def _media_event(member: Member, signal: Signal) -> dict[str, Any]:
    return {
        "type": "media.signal",
        "appointment_id": member.appointment_id,
        "participant_key": member.key,
        "signal": signal.as_dict(),
    }


def _apply_media(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    return Outcome(to_media=_media_event(member, signal))


def _apply_quality(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    event = {"type": "session.quality", "participant_key": member.key, **signal.data}
    return Outcome(to_session=[event])


def _apply_link(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    # Not kept in the database: the page sends its mode again after every (re)connection.
    status = {"type": "session.status", "participant_key": member.key, "link": signal.data["mode"]}
    return Outcome(to_session=[status], to_media=_media_event(member, signal))


def _apply_screen(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    status = {"type": "session.status", "participant_key": member.key, "screen": signal.data["on"]}
    return Outcome(to_session=[status])


def _apply_consent(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    assert presence is not None
    recording.set_consent(presence=presence, given=signal.data["given"])
    return Outcome()  # the recording state follows (_recording_follows)


def _apply_record(
    member: Member, signal: Signal, presence: SessionPresence | None, channel_name: str
) -> Outcome:
    start = signal.data["action"] == "start"
    try:
        if start:
            running = recording.start_recording(
                appointment_id=member.appointment_id,
                user_id=member.user_id,
                name=member.name,
                is_clinician_side=member.is_clinician_side,
            )
        else:
            running = recording.stop_recording_by(
                appointment_id=member.appointment_id,
                user_id=member.user_id,
                name=member.name,
                is_clinician_side=member.is_clinician_side,
            )
    except (PermissionDenied, ValidationError) as problem:
        message = " ".join(problem.messages) if isinstance(problem, ValidationError) else ""
        raise SignalRefused(message or str(problem)) from problem
    return Outcome(
        to_session=[recording.recording_event(member.appointment_id)],
        to_media=recording.broker_message(running, participant_key=member.key, start=start),
    )


# What may change whether a running recording still has everyone's consent.
RECORDING_FOLLOWS = frozenset({"join", "leave", "admit", "consent"})


def _recording_follows(member: Member, signal: Signal, outcome: Outcome) -> Outcome:
    """After a move that changes who is in the call or who consents: a recording someone in
    the call has not consented to stops at once, and everyone sees the recording state."""
    if signal.type not in RECORDING_FOLLOWS:
        return outcome
    stopped, reason = recording.stop_without_consent(member.appointment_id)
    # (When everyone left, the broker stops by itself as its room empties. Only a leave
    # carries a media event of its own, and a leave never takes away anyone's consent.)
    if stopped is not None and reason != recording.EVERYONE_LEFT and outcome.to_media is None:
        outcome.to_media = recording.broker_message(
            stopped, participant_key=member.key, start=False
        )
    outcome.to_session.append(recording.recording_event(member.appointment_id, reason=reason))
    return outcome


APPLIERS = {
    "join": _apply_join,
    "leave": _apply_leave,
    "chat": _apply_chat,
    "mute": _apply_mute,
    "admit": _apply_admission,
    "decline": _apply_admission,
    "offer": _apply_media,
    "answer": _apply_media,
    "ice": _apply_media,
    "quality": _apply_quality,
    "link": _apply_link,
    "screen": _apply_screen,
    "consent": _apply_consent,
    "record": _apply_record,
}
