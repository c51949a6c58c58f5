"""Watching a session's recordings: a page per session, and the file (played or downloaded),
each read checked and audited (consults/services/recording.py)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from consults.services.recording import recording_for, session_recordings_for
from consults.services.signaling import Member, join_keys_of, member_for


def _link_member(request: HttpRequest) -> Member | None:
    """The patient who opened a session's join link in this browser (the link still valid),
    or None: they have no account, and may watch that session's recordings."""
    join_session = join_keys_of(request.session)
    appointment_id = join_session.get("join_appointment_id")
    if appointment_id is None:
        return None
    return member_for(appointment_id=appointment_id, join_session=join_session)


@require_GET
def session_recordings(request: HttpRequest, appointment_id: int) -> HttpResponse:
    link_member = None
    if not request.user.is_authenticated:
        link_member = _link_member(request)
        if link_member is None:
            return redirect_to_login(request.get_full_path())
    appointment, recordings = session_recordings_for(
        user=request.user, appointment_id=appointment_id, link_member=link_member
    )
    context = {"appointment": appointment, "recordings": recordings}
    return render(request, "consults/session_recordings.html", context)


@require_GET
def recording_file(request: HttpRequest, recording_id: int) -> HttpResponse:
    """The MP4, to play in the page (?download=1: as a file to keep)."""
    download = request.GET.get("download") == "1"
    link_member = None
    if not request.user.is_authenticated:
        link_member = _link_member(request)
        if link_member is None:
            return redirect_to_login(request.get_full_path())
    recording = recording_for(
        user=request.user, recording_id=recording_id, download=download, link_member=link_member
    )
    response = FileResponse(
        recording.file.open("rb"),
        content_type="video/mp4",
        as_attachment=download,
        filename=f"session-{recording.appointment_id}-recording-{recording.pk}.mp4",
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
