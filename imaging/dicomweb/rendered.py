"""WADO-RS rendered resources (PS3.18 10.4.1.1.3): an instance or a frame as JPEG or PNG, with
the window, viewport and quality the client asks for. Rendering and its cache are
imaging.services.renditions."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from imaging.dicom.render import NotRenderable
from imaging.dicomweb.auth import DicomwebError
from imaging.dicomweb.multipart import parse_accept
from imaging.dicomweb.wado import requested_instance
from imaging.services.renditions import rendered_frame


def _rendered_media_type(request: HttpRequest) -> str:
    for media in parse_accept(request.headers.get("Accept", "")):
        if media.media_type in ("image/jpeg", "image/png"):
            return media.media_type
        if media.media_type in ("*/*", "image/*", "image/", "*"):
            return "image/jpeg"
    raise DicomwebError(406, _("Rendered images are sent as image/jpeg or image/png."))


def _numbers(name: str, text: str, kind: Callable[[str], float]) -> list:
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        raise DicomwebError(400, _("%s has a value that is not a number.") % name) from None


def _rendering_options(request: HttpRequest) -> dict:
    options: dict = {}
    window = request.GET.get("window")
    if window:
        parts = window.split(",")
        if len(parts) == 3:
            if parts[2].strip().lower() != "linear":
                raise DicomwebError(400, _("Only the linear window function is supported."))
            parts = parts[:2]
        center, width = _numbers("window", ",".join(parts), float) if len(parts) == 2 else (0, 0)
        if len(parts) != 2 or width <= 0:
            raise DicomwebError(400, _("window is center,width[,linear] with a positive width."))
        options["window"] = (center, width)
    viewport = request.GET.get("viewport")
    if viewport:
        sizes = _numbers("viewport", viewport, int)
        if len(sizes) != 2 or min(sizes) <= 0:
            raise DicomwebError(400, _("viewport is width,height in pixels (no cropping)."))
        options["viewport"] = (sizes[0], sizes[1])
    quality = request.GET.get("quality")
    if quality:
        value = _numbers("quality", quality, int)
        if len(value) != 1 or not 1 <= value[0] <= 100:
            raise DicomwebError(400, _("quality is a number from 1 to 100."))
        options["quality"] = value[0]
    return options


def _rendered(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, frame: str
) -> HttpResponse:
    media_type = _rendered_media_type(request)
    options = _rendering_options(request)
    instance = requested_instance(request, study_uid, series_uid, sop_uid, "rendered", frame=frame)
    if not frame.isdigit():
        raise DicomwebError(400, _("Rendered frames are asked one at a time: frames/1/rendered."))
    try:
        # Baseline JPEG, as other PACS send: a DICOMweb viewer asks for the frames of a whole
        # series at once, and a progressive one costs 8 times more to make (our own viewer,
        # for slow links, asks for progressive frames through its own URL).
        content = rendered_frame(
            instance=instance,
            frame=int(frame),
            media_type=media_type,
            progressive=False,
            keep_later=True,  # a viewer's burst of first requests does not wait for the cache
            **options,
        )
    except NotRenderable as error:
        raise DicomwebError(400, _("Cannot render it: %s") % error) from None
    response = HttpResponse(content, content_type=media_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


def instance_rendered(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    return _rendered(request, study_uid, series_uid, sop_uid, "1")


def frame_rendered(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, frames: str
) -> HttpResponse:
    return _rendered(request, study_uid, series_uid, sop_uid, frames)
