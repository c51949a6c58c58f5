"""The call page of a video session, for its participants: by account or by a join link."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from consults.models import Appointment
from consults.services.ice import ice_servers_for
from consults.services.signaling import MAX_CHAT_CHARS, join_keys_of, member_for

BISHKEK = ZoneInfo("Asia/Bishkek")


@never_cache
def session_page(request: HttpRequest, appointment_id: int) -> HttpResponse:
    """Video, controls, participants and chat; the script does the rest over the socket.

    Strangers get a 404, as for any appointment they cannot see."""
    member = member_for(
        appointment_id=appointment_id,
        user=request.user,
        join_session=join_keys_of(request.session),
    )
    if member is None:
        raise Http404("No such session")
    appointment = Appointment.objects.select_related("specialist").get(pk=appointment_id)
    config: dict[str, Any] = {
        "socketPath": f"/ws/sessions/{appointment_id}/",
        "iceServers": ice_servers_for(member.key),
        "participantKey": member.key,
        "isClinician": member.is_clinician_side,
        "maxChat": MAX_CHAT_CHARS,
        # Chat times in the zone the site shows the user, not the device's (often UTC).
        "timeZone": timezone.get_current_timezone_name(),
        "strings": _strings(),
    }
    starts_at = timezone.localtime(appointment.starts_at, BISHKEK)
    context = {
        "config": config,
        "member": member,
        "specialist_name": appointment.specialist.full_name,
        "time": f"{starts_at:%d.%m.%Y %H:%M}",
    }
    response = render(request, "consults/session.html", context)
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _strings() -> dict[str, str]:
    return {
        "connecting": _("Connecting…"),
        "turnOnSound": _("Tap to turn on the sound"),
        "reconnecting": _("Connection lost. Reconnecting…"),
        "waiting": _("You are in the waiting room. The doctor will admit you shortly."),
        "declined": _("The doctor did not admit you to this session."),
        "admitted": _("You are in the call."),
        "left": _("You left the session."),
        "refused": _("This session is not open to you. Open your link or log in again."),
        "noCamera": _("Camera and microphone are off: you can still chat."),
        "mute": _("Mute"),
        "unmute": _("Unmute"),
        "cameraOff": _("Camera off"),
        "cameraOn": _("Camera on"),
        "admit": _("Admit"),
        "decline": _("Decline"),
        "you": _("you"),
        "state_waiting": _("waiting"),
        "state_admitted": _("in the call"),
        "state_declined": _("declined"),
        "state_left": _("left"),
        "micOff": _("microphone off"),
        "camOff": _("camera off"),
        "quality_good": _("Connection: good"),
        "quality_fair": _("Connection: fair"),
        "quality_poor": _("Connection: poor"),
        "mediaFailed": _("Video could not connect. Chat still works; try leaving and joining."),
        "mediaReconnecting": _("Video connection lost. Reconnecting…"),
        "weakLinkOn": _("Weak link: on"),
        "weakLinkOff": _("Weak link"),
        "audioOnlyOn": _("Audio only: on"),
        "audioOnlyOff": _("Audio only"),
        "shareScreen": _("Share screen"),
        "stopSharing": _("Stop sharing"),
        "proposeWeakLink": _(
            "Your connection is poor. Switch to weak-link mode (smaller video, sound first)?"
        ),
        "switchWeakLink": _("Switch"),
        "notNow": _("Not now"),
        "link_low": _("weak link"),
        "link_audio": _("audio only"),
        "sharingScreen": _("sharing screen"),
        # recording.js
        "recordingOn": _("● Recording (started by {name})"),
        "startRecording": _("Start recording"),
        "stopRecording": _("Stop recording"),
        "recordingNeedsConsent": _("Recording needs the consent of everyone in the call."),
        "consentGiven": _("consents to recording"),
        "consentMissing": _("has not consented to recording"),
        "recordingStopped_stopped": _("Recording stopped."),
        "recordingStopped_consent_withdrawn": _(
            "Recording stopped: someone withdrew their consent."
        ),
        "recordingStopped_joined_without_consent": _(
            "Recording stopped: someone joined without consenting to it."
        ),
        "recordingStopped_everyone_left": _("Recording stopped: everyone left."),
    }
