"""Pages a patient (or relative) reaches by a join link, without an account, and the device
check anyone can run before a visit.

Whoever holds a link sees these pages, so they show the appointment's time, the specialist
and the kind of visit, and never the diagnosis or the clinical question.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from consults.models import Appointment, JoinLink, Participant
from consults.services.link_quality import levels_for_browser, verdicts_for_browser
from consults.services.links import LinkCheck, check_join_link, held_join_link, use_join_link

# Patients are told times in Kyrgyzstan's zone, whatever the server or a browser is set to.
BISHKEK = ZoneInfo("Asia/Bishkek")

# A probe bigger than this would take over a minute on 300 kbit/s, and lets anyone make us
# send or swallow a lot of bytes for free.
PROBE_MAX_BYTES = 2 * 1024 * 1024
# Where the browser starts; it grows the probe until one lasts about a second.
PROBE_START_BYTES = 32 * 1024
_CHUNK = 64 * 1024

# HTTP status per problem. Too early answers 200: the link is right, the patient is only
# early, and the page tells them when to come back.
PROBLEM_STATUS = {
    "unknown": 404,
    "revoked": 410,
    "cancelled": 410,
    "expired": 410,
    "too_early": 200,
}

SESSION_PARTICIPANT = "join_participant_id"
SESSION_APPOINTMENT = "join_appointment_id"
SESSION_LINK = "join_link_id"


def _private(response: HttpResponse) -> HttpResponse:
    # The token is in the URL: keep it out of other sites' referrers, caches and search
    # engines. Not "no-referrer": the browser would then send "Origin: null" with the Join
    # form, and the CSRF check would refuse it.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _local(moment: dt.datetime) -> dt.datetime:
    return timezone.localtime(moment, BISHKEK)


def _problem_message(check: LinkCheck) -> str:
    if check.problem == "too_early" and check.opens_at is not None:
        opens = _local(check.opens_at)
        return _("The link opens at %(time)s on %(date)s.") % {
            "time": opens.strftime("%H:%M"),
            "date": opens.strftime("%d.%m"),
        }
    return {
        "unknown": _("This link is not valid."),
        "revoked": _("This link was replaced by a newer one."),
        "cancelled": _("This appointment was cancelled."),
        "expired": _("This appointment is over."),
    }[check.problem or "unknown"]


def _appointment_facts(appointment: Appointment) -> dict[str, Any]:
    # Deliberately only these: no specialty, question or diagnosis (see the module docstring).
    starts_at = _local(appointment.starts_at)
    return {
        "date": starts_at.strftime("%d.%m.%Y"),
        "time": f"{starts_at:%H:%M}–{_local(appointment.ends_at):%H:%M}",
        "specialist_name": appointment.specialist.full_name,
        "kind": appointment.get_kind_display(),
    }


def _clinic(link: JoinLink | None) -> Any:
    return link.participant.appointment.referral.referring_organization if link else None


@never_cache
def join_link(request: HttpRequest, token: str) -> HttpResponse:
    """The page a join link opens: the appointment, the device check, and "Join"."""
    check = check_join_link(token=token)
    if check.problem is not None:
        context = {"message": _problem_message(check), "problem": check.problem}
        context["clinic"] = _clinic(check.link)
        response = render(
            request, "consults/join_problem.html", context, status=PROBLEM_STATUS[check.problem]
        )
        return _private(response)
    link = check.link
    assert link is not None  # a usable check always carries its link
    use_join_link(link=link)
    context = {
        "participant": link.participant,
        "appointment": _appointment_facts(link.participant.appointment),
        "clinic": _clinic(link),
        "token": token,
        "device_check_url": reverse("join:device-check")
        + "?next="
        + reverse("join:link", args=[token]),
    }
    return _private(render(request, "consults/join_link.html", context))


@require_POST
@never_cache
def join_enter(request: HttpRequest, token: str) -> HttpResponse:
    """ "Join": the session remembers who this browser is, for the waiting and call pages."""
    check = check_join_link(token=token)
    if check.problem is not None:
        return join_link(request, token)  # same page, same status, same words
    link = check.link
    assert link is not None
    # A new session key: whatever session this browser had before cannot ride on the link.
    request.session.cycle_key()
    request.session[SESSION_PARTICIPANT] = link.participant_id
    request.session[SESSION_APPOINTMENT] = link.participant.appointment_id
    request.session[SESSION_LINK] = link.pk
    return redirect("join:waiting", appointment_id=link.participant.appointment_id)


def _joined_participant(request: HttpRequest, appointment_id: int) -> Participant | None:
    """The participant this browser joined as, if it joined this appointment by a link that
    still holds (not revoked since, appointment not cancelled)."""
    if request.session.get(SESSION_APPOINTMENT) != appointment_id:
        return None
    link = held_join_link(
        appointment_id=appointment_id,
        link_id=request.session.get(SESSION_LINK),
        participant_id=request.session.get(SESSION_PARTICIPANT),
    )
    if link is None or link.participant.appointment.status == Appointment.Status.CANCELLED:
        return None
    return link.participant


@never_cache
def join_waiting(request: HttpRequest, appointment_id: int) -> HttpResponse:
    """Where "Join" leads until the call page exists: the session will open here."""
    participant = _joined_participant(request, appointment_id)
    if participant is None:
        context = {
            "message": _("This page opens only from your personal link. Open the link again."),
            "problem": "not_joined",
            "clinic": None,
        }
        return _private(render(request, "consults/join_problem.html", context, status=403))
    context = {
        "participant": participant,
        "appointment": _appointment_facts(participant.appointment),
        "session_url": reverse("consults:session", args=[participant.appointment_id]),
        "device_check_url": reverse("join:device-check") + "?next=" + request.path,
    }
    return _private(render(request, "consults/join_waiting.html", context))


# --- the device check --------------------------------------------------------------------------


def _probe_size(value: str | None, default: int) -> int:
    try:
        size = int(value) if value is not None else default
    except ValueError:
        size = default
    return max(0, min(size, PROBE_MAX_BYTES))


def device_check(request: HttpRequest) -> HttpResponse:
    """Camera, microphone and link speed, with a plain-words verdict. Open to everyone."""
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    config = {
        "probeUrl": reverse("join:device-check-probe"),
        "probeStartBytes": PROBE_START_BYTES,
        # Tests (and a curious support person) can cap the probe: ?probe_max=65536.
        "probeMaxBytes": _probe_size(request.GET.get("probe_max"), PROBE_MAX_BYTES),
        "csrfToken": get_token(request),
        "levels": levels_for_browser(),
        "verdicts": verdicts_for_browser(),
        "strings": _device_check_strings(),
    }
    context = {"config": config, "next_url": next_url}
    return _private(render(request, "consults/device_check.html", context))


def _device_check_strings() -> dict[str, str]:
    return {
        "starting": _("Asking for your camera and microphone…"),
        "cameraOk": _("Camera works: you should see yourself."),
        "micOk": _("Microphone works: the bar moves when you speak."),
        "denied": _(
            "You did not allow the camera and microphone. Tap the lock or camera icon next "
            "to the address, allow both, then reload this page."
        ),
        "noDevice": _(
            "No camera or microphone found. Plug in a headset or use a phone with a camera."
        ),
        "noCamera": _("No camera found: you can still join by voice."),
        "busy": _(
            "The camera or microphone is used by another app (a call, WhatsApp). "
            "Close it, then reload this page."
        ),
        "unsupported": _(
            "This browser cannot use the camera here. Open the link in Chrome or Safari."
        ),
        "failed": _("The camera and microphone could not be started."),
        "measuring": _("Measuring your connection…"),
        "netFailed": _("The connection test failed. Check your mobile data and try again."),
        "down": _("Download speed"),
        "up": _("Upload speed"),
        "rtt": _("Delay"),
        "kbps": _("kbit/s"),
        "ms": _("ms"),
    }


@require_http_methods(["GET", "POST"])
@never_cache
def device_check_probe(request: HttpRequest) -> HttpResponse:
    """GET ?bytes=N: N incompressible bytes; POST: counts the bytes sent, stores nothing."""
    if request.method == "POST":
        return _probe_upload(request)
    size = _probe_size(request.GET.get("bytes"), 0)
    # Random bytes: no proxy or transparent compression on a mobile network can shrink them.
    response = HttpResponse(os.urandom(size), content_type="application/octet-stream")
    response["Cache-Control"] = "no-store"
    return response


def _probe_upload(request: HttpRequest) -> HttpResponse:
    # The CSRF middleware has checked the token; the body is read in chunks and thrown
    # away, so a big upload costs neither memory nor disk.
    declared = int(request.headers.get("Content-Length") or 0)
    if declared > PROBE_MAX_BYTES:
        return JsonResponse({"error": "too large", "max": PROBE_MAX_BYTES}, status=413)
    received = 0
    while chunk := request.read(_CHUNK):
        received += len(chunk)
    response = JsonResponse({"received": received})
    response["Cache-Control"] = "no-store"
    return response
