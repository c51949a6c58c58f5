"""Recording a session's call: consent, start and stop, and who may watch the result.

Rules:
- every member may give or withdraw their own consent on the call page, any time;
- a doctor of the session (clinician side) starts and stops the recording, and may start it
  only while everyone in the call (admitted, not gone) has consented;
- while it records, anyone in the call without consent (they withdrew it, or they came in
  without having given it) stops it at once, and everyone is told why; so does the call
  emptying;
- the broker records (consults/media/recorder.py), a Celery task composes the MP4
  (consults/media/compose.py, run by consults/recording_tasks.py); start and stop are
  audited, and so is every view or download of the file (`recording_for`).

Signaling (consults/services/signaling.py) calls these functions inside its transaction and
sends the events they return; this module knows nothing of sockets.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from consults.media.compose import CompositionError, compose_mp4
from consults.models import Appointment, Recording, SessionPresence

if TYPE_CHECKING:  # signaling imports this module
    from consults.services.signaling import Member

Action = AuditEvent.Action
State = SessionPresence.State
Status = Recording.Status

# Why a recording stopped (Recording.stop_reason), as the page words them (session_views).
STOPPED = "stopped"
CONSENT_WITHDRAWN = "consent_withdrawn"
JOINED_WITHOUT_CONSENT = "joined_without_consent"
EVERYONE_LEFT = "everyone_left"


def recording_directory(recording_id: int) -> Path:
    """Where the broker writes the raw media of a recording (the worker reads it there)."""
    return Path(settings.RECORDING_DIR) / str(recording_id)


def active_recording(appointment_id: int, *, lock: bool = False) -> Recording | None:
    rows = Recording.objects.filter(appointment_id=appointment_id, status=Status.RECORDING)
    return (rows.select_for_update() if lock else rows).first()


def in_call(appointment_id: int) -> QuerySet[SessionPresence]:
    return SessionPresence.objects.filter(appointment_id=appointment_id, state=State.ADMITTED)


def without_consent(appointment_id: int) -> list[SessionPresence]:
    return list(in_call(appointment_id).filter(recording_consent=False))


def recording_event(appointment_id: int, *, reason: str = "") -> dict[str, Any]:
    """The channel-layer event that tells everyone in the call the recording's state.

    `as_of` (microseconds) is when the state was read: two moves at the same moment (both
    doctors ticking their consent) send two events, and the one read first may reach a page
    last; the page keeps the latest read."""
    as_of = time.time_ns() // 1000
    recording = active_recording(appointment_id)
    return {
        "as_of": as_of,
        "type": "session.recording",
        "recording": recording is not None,
        "recording_id": recording.pk if recording else None,
        "started_by": recording.started_by_name if recording else "",
        "consents": {p.participant_key: p.recording_consent for p in in_call(appointment_id)},
        "reason": reason,
    }


def set_consent(*, presence: SessionPresence, given: bool) -> SessionPresence:
    presence.recording_consent = given
    presence.consent_changed_at = timezone.now()
    presence.save(update_fields=["recording_consent", "consent_changed_at", "updated_at"])
    return presence


def start_recording(
    *, appointment_id: int, user_id: int | None, name: str, is_clinician_side: bool
) -> Recording:
    """Raises PermissionDenied (not a doctor of the session) or ValidationError (someone in
    the call has not consented, or it is already recording)."""
    if not is_clinician_side:
        raise PermissionDenied(_("Only the doctors of this session start or stop recording."))
    # Locks the session's presences: a consent withdrawn at the same moment waits for us.
    list(in_call(appointment_id).select_for_update())
    if active_recording(appointment_id, lock=True) is not None:
        raise ValidationError(_("This session is already being recorded."))
    missing = without_consent(appointment_id)
    if missing:
        raise ValidationError(
            _("Recording needs everyone's consent. Not yet: %(names)s.")
            % {"names": ", ".join(p.name for p in missing)}
        )
    recording = Recording.objects.create(
        appointment_id=appointment_id, started_by_id=user_id, started_by_name=name
    )
    _audit(recording, user_id=user_id, name=name, detail={"recording": "start"})
    return recording


def stop_recording(
    *, recording: Recording, reason: str, user_id: int | None = None, name: str = ""
) -> Recording:
    """The broker closes its files; the compose task takes over (status "processing")."""
    recording.status = Status.PROCESSING
    recording.stopped_at = timezone.now()
    recording.stop_reason = reason
    recording.save(update_fields=["status", "stopped_at", "stop_reason"])
    _audit(recording, user_id=user_id, name=name, detail={"recording": "stop", "reason": reason})
    return recording


def stop_recording_by(
    *, appointment_id: int, user_id: int | None, name: str, is_clinician_side: bool
) -> Recording:
    """A doctor of the session stops its recording. Raises PermissionDenied (not a doctor)
    or ValidationError (nothing is being recorded)."""
    if not is_clinician_side:
        raise PermissionDenied(_("Only the doctors of this session start or stop recording."))
    running = active_recording(appointment_id, lock=True)
    if running is None:
        raise ValidationError(_("This session is not being recorded."))
    return stop_recording(recording=running, reason=STOPPED, user_id=user_id, name=name)


def stop_without_consent(appointment_id: int) -> tuple[Recording | None, str]:
    """After anyone's move (join, admission, consent, leave): stop a running recording that
    someone in the call has not consented to, or that nobody is left in. Returns the
    recording stopped (or None) and why."""
    recording = active_recording(appointment_id, lock=True)
    if recording is None:
        return None, ""
    if not in_call(appointment_id).exists():
        reason = EVERYONE_LEFT
    elif missing := without_consent(appointment_id):
        withdrawn = any(p.consent_changed_at for p in missing)
        reason = CONSENT_WITHDRAWN if withdrawn else JOINED_WITHOUT_CONSENT
    else:
        return None, ""
    return stop_recording(recording=recording, reason=reason), reason


def broker_message(recording: Recording, *, participant_key: str, start: bool) -> dict[str, Any]:
    """The channel-layer message that makes the media broker start or stop recording."""
    signal: dict[str, Any] = {
        "type": "record",
        "action": "start" if start else "stop",
        "recording_id": recording.pk,
    }
    if start:
        signal["directory"] = str(recording_directory(recording.pk))
    return {
        "type": "media.signal",
        "appointment_id": recording.appointment_id,
        "participant_key": participant_key,
        "signal": signal,
    }


def _audit(
    recording: Recording,
    *,
    user_id: int | None,
    name: str,
    detail: dict[str, Any],
) -> None:
    appointment = Appointment.objects.select_related("referral").get(pk=recording.appointment_id)
    record_event(
        actor=User.objects.filter(pk=user_id).first() if user_id else None,
        actor_label=name,
        action=Action.CREATE if detail["recording"] == "start" else Action.UPDATE,
        target=recording,
        patient_id=appointment.referral.patient_id,
        region=appointment.referral.region,
        detail=detail,
    )


# --- composing it (the Celery task consults.recording_tasks.compose_recording) ---------------


def finish_recording(*, recording_id: int) -> Recording:
    """Compose the MP4 from the broker's files, store it, mark the recording ready (or
    failed, saying why) and remove the raw files. Safe to run twice."""
    recording = Recording.objects.get(pk=recording_id)
    if recording.status == Status.READY:
        return recording
    if recording.status == Status.RECORDING:
        # The broker stopped on its own: the room emptied, or the broker was stopped.
        recording.stopped_at = timezone.now()
        recording.stop_reason = recording.stop_reason or EVERYONE_LEFT
    recording.status = Status.PROCESSING
    recording.save(update_fields=["status", "stopped_at", "stop_reason"])
    directory = recording_directory(recording.pk)
    names = dict(
        SessionPresence.objects.filter(appointment_id=recording.appointment_id).values_list(
            "participant_key", "name"
        )
    )
    try:
        with tempfile.TemporaryDirectory() as work:
            output = Path(work) / "recording.mp4"
            duration = compose_mp4(directory, names, output)
            recording.size = output.stat().st_size
            with output.open("rb") as handle:
                recording.file.save(
                    f"recording-{recording.appointment_id}-{recording.pk}.mp4",
                    File(handle),
                    save=False,
                )
    except (CompositionError, av.error.FFmpegError, ValueError) as problem:
        recording.status, recording.error = Status.FAILED, str(problem)[:2000]
        recording.save(update_fields=["status", "error"])
        return recording
    recording.status, recording.duration, recording.error = Status.READY, duration, ""
    recording.save(update_fields=["status", "duration", "size", "file", "error"])
    shutil.rmtree(directory, ignore_errors=True)
    return recording


# --- watching it ------------------------------------------------------------------------------


# A recording nobody stopped (its broker died with the call) is finished once the call has
# been empty this long; one whose composition never ended (a lost task) is composed again.
ABANDONED_AFTER = dt.timedelta(minutes=10)
COMPOSE_AGAIN_AFTER = dt.timedelta(hours=3)


def finish_abandoned_recordings(*, now: dt.datetime | None = None) -> list[int]:
    """Recordings left "recording" after their call emptied, or "processing" for hours: each
    is composed from whatever the broker wrote (or fails, saying why), never left hanging.
    Returns their ids. Run by Celery beat (consults.recording_tasks.sweep_recordings)."""
    now = now or timezone.now()
    done = []
    for recording in Recording.objects.filter(status=Status.RECORDING):
        presences = SessionPresence.objects.filter(appointment_id=recording.appointment_id)
        someone_in = presences.filter(state=State.ADMITTED).exists()
        last_change = max(
            [p.updated_at for p in presences] + [recording.started_at], default=recording.started_at
        )
        if not someone_in and now - last_change >= ABANDONED_AFTER:
            finish_recording(recording_id=recording.pk)
            done.append(recording.pk)
    stale = Recording.objects.filter(
        status=Status.PROCESSING, stopped_at__lt=now - COMPOSE_AGAIN_AFTER
    )
    for recording_id in stale.values_list("pk", flat=True):
        finish_recording(recording_id=recording_id)
        done.append(recording_id)
    return done


def appointments_visible_to(user: User) -> QuerySet[Appointment]:
    """Those who may see the consult, and those invited to its sessions."""
    return access.scope(user, access.VIEW, Appointment.objects.all())


def session_recordings_for(
    *, user: User | None, appointment_id: int, link_member: Member | None = None
) -> tuple[Appointment, list[Recording]]:
    """A session and its recordings, for a user who may see it, or for the patient holding
    its valid join link (`link_member`); Http404 otherwise."""
    if link_member is not None:
        appointment = Appointment.objects.filter(pk=link_member.appointment_id).first()
        recordings = Recording.objects.filter(appointment_id=link_member.appointment_id)
    else:
        assert user is not None
        appointment = appointments_visible_to(user).filter(pk=appointment_id).first()
        recordings = recordings_of(user=user, appointment_ids=[appointment_id])
    if appointment is None or appointment.pk != appointment_id:
        raise Http404("No such session")
    return appointment, list(recordings.select_related("appointment"))


def recordings_of(*, user: User, appointment_ids: Any) -> QuerySet[Recording]:
    """The recordings of these appointments this user may watch (no audit: a list of them,
    shown on a page whose read is already audited)."""
    visible = appointments_visible_to(user).filter(pk__in=appointment_ids).values("pk")
    return Recording.objects.filter(appointment__in=visible).select_related("appointment")


def recording_for(
    *,
    user: User | None,
    recording_id: int,
    download: bool = False,
    link_member: Member | None = None,
) -> Recording:
    """A ready recording this user may watch; the read is audited (refusals too).

    `link_member`: a patient without an account who holds a valid join link of the session
    (signaling.member_for with the browser's join keys) may watch its recordings too."""
    recordings = Recording.objects.filter(pk=recording_id, status=Status.READY)
    if link_member is not None:
        recordings = recordings.filter(appointment_id=link_member.appointment_id)
    else:
        assert user is not None
        recordings = recordings.filter(appointment__in=appointments_visible_to(user).values("pk"))
    recording = recordings.select_related("appointment__referral").first()
    actor = user if user is not None and user.is_authenticated else None
    label = link_member.name if link_member is not None else ""
    if recording is None:
        record_event(
            actor=actor,
            actor_label=label,
            action=AuditEvent.Action.VIEW,
            outcome=AuditEvent.Outcome.DENIED,
            detail={"requested_recording_id": recording_id},
        )
        raise Http404("No such recording")
    referral = recording.appointment.referral
    record_event(
        actor=actor,
        actor_label=label,
        action=AuditEvent.Action.EXPORT if download else AuditEvent.Action.VIEW,
        target=recording,
        patient_id=referral.patient_id,
        region=referral.region,
        detail={"recording": "download" if download else "view"},
    )
    return recording
