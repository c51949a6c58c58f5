"""Browser uploads: the upload page and our small resumable upload protocol (tus-like).

All requests are session-authenticated and CSRF-protected (header X-CSRFToken); answers are
JSON with an "error" message when something is refused.

1. ``POST /imaging/uploads/`` (JSON or form: ``patient`` optional) starts a batch for the
   uploader's clinic → 201 ``{"batch": id, "files_url", "status_url"}``. Only clinicians may
   upload; a patient they may not change is refused (404, as for one that does not exist).
2. ``POST /imaging/uploads/<batch>/files/`` ``{"name", "path", "size"}`` declares one file
   (``path``: its relative path in a picked folder) → 201 ``{"upload_id", "url", "offset": 0}``.
   A file over settings.IMAGING_MAX_FILE_BYTES is refused with 413.
3. ``PATCH /imaging/uploads/files/<upload_id>`` (PUT works too) with header ``Upload-Offset``
   and one chunk of bytes as the body appends the chunk at that offset → 200 with the new
   ``Upload-Offset`` header and JSON state. An offset that is not where the upload stands
   answers 409 with the current offset (header and JSON): the client continues from there.
   The chunk that reaches the declared size completes the file: it goes to the ingest (a ZIP
   is unpacked in the background). An upload untouched for IMAGING_UPLOAD_EXPIRY_HOURS
   answers 410 and must be sent again.
4. ``HEAD`` or ``GET /imaging/uploads/files/<upload_id>`` → the current ``Upload-Offset`` and
   ``Upload-Length``: after a dropped link, a reload or on another day, the client asks, then
   resumes from there.
5. ``GET /imaging/uploads/<batch>/`` → progress of what follows: counts of files by status,
   each failed or refused file with its reason, skipped files, archives being unpacked.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import access
from ehr.models import Patient
from ehr.selectors import patient_for, search_patients
from imaging.services import uploads
from imaging.services.uploads import MAX_CHUNK_BYTES, UploadError

CHUNK_BYTES = 256 * 1024


def _error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def api_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like login_required, but a script gets 401 and a message, not the login page."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return _error(_("Your session has ended: log in again to continue."), 401)
        return view(request, *args, **kwargs)

    return wrapped


def _payload(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST.dict()


def _chosen_patient(request: HttpRequest, patient_id: Any) -> Patient | None:
    if patient_id in (None, ""):
        return None
    try:
        patient_id = int(patient_id)
    except (TypeError, ValueError) as error:
        raise Http404("No such patient") from error
    return patient_for(user=request.user, patient_id=patient_id, action=access.CHANGE)


@login_required
@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    """Pick files, a folder or a ZIP (or drop them), for a patient or not; watch them arrive."""
    if not uploads.uploading_organizations(request.user):
        raise PermissionDenied
    patient = _chosen_patient(request, request.GET.get("patient"))
    query = request.GET.get("q", "").strip()
    found = search_patients(user=request.user, query=query).object_list[:10] if query else []
    config = {
        "csrfToken": get_token(request),
        "batchesUrl": reverse("imaging:upload-batches"),
        "patient": patient.pk if patient else None,
        "chunkBytes": CHUNK_BYTES,
        "storageKey": f"telemed-uploads-{request.user.pk}",
        "strings": {
            "waiting": _("waiting"),
            "sending": _("sending"),
            "retrying": _("connection lost, retrying in %(seconds)s s"),
            "done": _("sent"),
            "failed": _("failed"),
            "resumed": _("resumed at %(percent)s"),
            "processing": _("Processing the files received…"),
            "finished": _("Finished."),
            "counts": _(
                "%(ingested)s indexed, %(duplicate)s already here, %(document)s kept as "
                "documents, %(failed)s failed, %(waiting)s waiting"
            ),
            "unpacking": _("unpacking %(name)s"),
            "nothing": _("Choose files, a folder or a ZIP first."),
            "sessionEnded": _("Your session has ended: log in again, then come back to resume."),
        },
    }
    return render(
        request,
        "imaging/upload.html",
        {
            "patient": patient,
            "query": query,
            "found": found,
            "config": config,
            "max_file_mb": settings.IMAGING_MAX_FILE_BYTES // 2**20,
            "studies_url": reverse("imaging:study-list"),
        },
    )


@api_login_required
@require_POST
def batch_create(request: HttpRequest) -> HttpResponse:
    data = _payload(request)
    try:
        patient = _chosen_patient(request, data.get("patient"))
        batch = uploads.start_batch(user=request.user, patient=patient)
    except Http404:
        return _error(_("No such patient, or not one you may add images for."), 404)
    except PermissionDenied as refusal:
        return _error(str(refusal) or _("You may not upload images."), 403)
    return JsonResponse(
        {
            "batch": batch.pk,
            "files_url": reverse("imaging:upload-files", args=[batch.pk]),
            "status_url": reverse("imaging:upload-status", args=[batch.pk]),
        },
        status=201,
    )


@api_login_required
@require_POST
def file_declare(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = uploads.own_batch(user=request.user, batch_id=batch_id)
    data = _payload(request)
    try:
        size = int(data.get("size", ""))
    except (TypeError, ValueError):
        return _error(_("The file size is missing."), 400)
    try:
        session = uploads.declare_file(
            batch=batch,
            user=request.user,
            name=str(data.get("name", "")),
            relative_path=str(data.get("path", "") or ""),
            size=size,
        )
    except UploadError as refusal:
        return _error(refusal.message, refusal.status)
    return _state_response(session, status=201)


def _state_response(session: Any, status: int = 200, **extra: Any) -> JsonResponse:
    state = {
        **uploads.upload_state(session),
        "url": reverse("imaging:upload-file", args=[session.upload_id]),
        **extra,
    }
    response = JsonResponse(state, status=status)
    response["Upload-Offset"] = str(session.offset)
    response["Upload-Length"] = str(session.size)
    response["Cache-Control"] = "no-store"
    return response


@api_login_required
@require_http_methods(["HEAD", "GET", "PATCH", "PUT"])
def file_chunk(request: HttpRequest, upload_id: str) -> HttpResponse:
    session = uploads.session_for(user=request.user, upload_id=upload_id)
    if request.method in ("HEAD", "GET"):
        if uploads.is_expired(session):
            return _error(_("The upload expired; send the file again."), 410)
        return _state_response(session)
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        return _error(_("The Upload-Offset header is missing."), 400)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:  # as Django reads it: no usable length (the read below is bounded)
        declared = 0
    if declared > MAX_CHUNK_BYTES:
        return _error(
            _("A chunk may be at most %(limit)d MB.") % {"limit": MAX_CHUNK_BYTES >> 20}, 413
        )
    # Read from the stream, not request.body (which refuses more than 2.5 MB).
    chunk = request.read(MAX_CHUNK_BYTES + 1)
    try:
        session = uploads.append_chunk(session=session, offset=offset, chunk=chunk)
    except UploadError as refusal:
        response = _error(refusal.message, refusal.status, **refusal.extra)
        if "offset" in refusal.extra:
            response["Upload-Offset"] = str(refusal.extra["offset"])
        return response
    return _state_response(session, error=session.error or None)


@api_login_required
@require_GET
def batch_status(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = uploads.visible_batch(user=request.user, batch_id=batch_id)
    response = JsonResponse(uploads.batch_status(batch))
    response["Cache-Control"] = "no-store"
    return response
