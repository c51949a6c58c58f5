"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data and rendered images.

Files are sent as stored unless the Accept header asks for a transfer syntax; metadata comes
from the index (Instance.metadata, one query per request), never from parsing files.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian

from accounts.models import AuditEvent
from imaging.dicom.transcode import NotTranscodable, frame_bytes, transcode
from imaging.dicomweb import attributes
from imaging.dicomweb.asgi import ThreadedRequest, next_batch
from imaging.dicomweb.auth import DicomwebError
from imaging.dicomweb.multipart import (
    Part,
    closing_delimiter,
    file_chunks,
    multipart_length,
    new_boundary,
    parse_accept,
    part_header,
    stream_parts,
)
from imaging.dicomweb.qido import base_url
from imaging.models import Instance, Study
from imaging.selectors import instance_for, study_for
from imaging.services.files import load_dataset

logger = logging.getLogger(__name__)

AS_STORED = "*"
OCTET_STREAM = "application/octet-stream"
# PS3.18 Table 8.7.3-5: the media type of a frame in each transfer syntax.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2": OCTET_STREAM,
    "1.2.840.10008.1.2.1": OCTET_STREAM,
    "1.2.840.10008.1.2.1.99": OCTET_STREAM,
    "1.2.840.10008.1.2.2": OCTET_STREAM,
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
}
# The transfer syntax a frame media type means when the Accept header names none.
DEFAULT_SYNTAX_OF_MEDIA = {
    OCTET_STREAM: ExplicitVRLittleEndian,
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/x-dicom-rle": "1.2.840.10008.1.2.5",
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/x-jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
}
ANY = {"*/*", "*", "multipart/*"}


# --- the resources ---------------------------------------------------------------------------


# Viewers fetch frames one by one, hundreds per series: one audit event per burst.
BURST_READS = {"frames", "rendered"}


def requested_study(request: HttpRequest, study_uid: str, what: str, **detail: str) -> Study:
    return study_for(
        user=request.user,
        study_uid=study_uid,
        audit_action=AuditEvent.Action.VIEW,
        detail={"dicomweb": what, **detail},
        audit_once_per=what if what in BURST_READS else "",
    )


def _instances(
    study: Study, series_uid: str | None = None, sop_uid: str | None = None
) -> list[Instance]:
    instances = Instance.objects.filter(series__study=study).select_related(
        "series", "received_file"
    )
    if series_uid is not None:
        instances = instances.filter(series__series_instance_uid=series_uid)
    if sop_uid is not None:
        instances = instances.filter(sop_instance_uid=sop_uid)
    found = list(
        instances.defer("metadata").order_by(
            "series__series_number", "series_id", "instance_number", "id"
        )
    )
    if not found:
        raise Http404
    return found


def _streaming(request: HttpRequest, chunks: Iterator[bytes], content_type: str) -> HttpResponse:
    """A streamed answer. Under Django's ASGI handler, a plain iterator would be gathered into
    memory before sending; an async iterator that pulls a few MB per thread hop keeps memory
    flat. The web process's DICOMweb path (ThreadedRequest) pulls plain iterators itself."""
    if isinstance(request, ASGIRequest) and not isinstance(request, ThreadedRequest):

        async def pull() -> AsyncIterator[bytes]:
            step = sync_to_async(next_batch, thread_sensitive=False)
            while batch := await step(chunks):
                yield batch

        return StreamingHttpResponse(pull(), content_type=content_type)
    return StreamingHttpResponse(chunks, content_type=content_type)


# --- retrieving instances --------------------------------------------------------------------


def _accepted_syntaxes(request: HttpRequest) -> list[str]:
    """The transfer syntaxes the client accepts for application/dicom, best first; "*" = as
    stored. Without a transfer-syntax parameter we send the file as stored (it is what the
    modality sent; every reader here handles it), as Orthanc does."""
    syntaxes = []
    for media in parse_accept(request.headers.get("Accept", "")):
        kind = media.media_type
        if kind == "multipart/related":
            kind = media.params.get("type", "application/dicom").lower()
        if kind in ANY or kind in ("application/dicom", "application/*"):
            syntaxes.append(media.params.get("transfer-syntax") or AS_STORED)
    if not syntaxes:
        raise DicomwebError(
            406, _('Instances are sent as multipart/related; type="application/dicom".')
        )
    return syntaxes


def _syntax_for(instance: Instance, syntaxes: list[str]) -> str:
    for syntax in syntaxes:
        if syntax in (AS_STORED, instance.transfer_syntax_uid):
            return AS_STORED
    return syntaxes[0]


def _transcoded(instance: Instance, syntaxes: list[str]) -> bytes:
    dataset = load_dataset(instance)
    problems = []
    for syntax in syntaxes:
        try:
            converted = transcode(dataset, syntax)
        except NotTranscodable as error:
            problems.append(str(error))
            continue
        buffer = io.BytesIO()
        converted.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()
    raise NotTranscodable("; ".join(problems))


def _instance_part(instance: Instance, syntaxes: list[str]) -> Part:
    if _syntax_for(instance, syntaxes) == AS_STORED:
        return Part(
            f"application/dicom; transfer-syntax={instance.transfer_syntax_uid}",
            lambda: file_chunks(lambda: instance.received_file.file.open("rb")),
            size=instance.received_file.size,  # kept exactly as received
        )

    def converted() -> Iterable[bytes]:
        try:
            content = _transcoded(instance, syntaxes)
        except NotTranscodable as error:
            # The headers are sent: leave this instance out and say so in the log.
            logger.warning("WADO-RS: %s left out: %s", instance.sop_instance_uid, error)
            return []
        return [content]

    syntax = next((s for s in syntaxes if s != AS_STORED), syntaxes[0])
    return Part(f"application/dicom; transfer-syntax={syntax}", converted)


def _retrieve(request: HttpRequest, instances: list[Instance]) -> HttpResponse:
    syntaxes = _accepted_syntaxes(request)
    if len(instances) == 1 and _syntax_for(instances[0], syntaxes) != AS_STORED:
        # One instance: a syntax we cannot produce is known before answering (406).
        try:
            content = _transcoded(instances[0], syntaxes)
        except NotTranscodable as error:
            message = _("Cannot send it in that transfer syntax: %s") % error
            raise DicomwebError(406, message) from None
        syntax = dcmread(io.BytesIO(content), stop_before_pixels=True).file_meta.TransferSyntaxUID
        parts = [Part(f"application/dicom; transfer-syntax={syntax}", lambda: [content])]
    else:
        parts = [_instance_part(instance, syntaxes) for instance in instances]
    boundary = new_boundary()
    response = _streaming(
        request,
        stream_parts(parts, boundary),
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )
    length = multipart_length(parts, boundary)
    if length is not None:
        response["Content-Length"] = str(length)
    return response


def retrieve_study(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = requested_study(request, study_uid, "retrieve study")
    return _retrieve(request, _instances(study))


def retrieve_series(request: HttpRequest, study_uid: str, series_uid: str) -> HttpResponse:
    study = requested_study(request, study_uid, "retrieve series", series=series_uid)
    return _retrieve(request, _instances(study, series_uid))


def retrieve_instance(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    study = requested_study(request, study_uid, "retrieve instance", instance=sop_uid)
    return _retrieve(request, _instances(study, series_uid, sop_uid))


# --- metadata --------------------------------------------------------------------------------


def _metadata(
    request: HttpRequest, study: Study, series_uid: str | None, sop_uid: str | None
) -> HttpResponse:
    rows = Instance.objects.filter(series__study=study)
    if series_uid is not None:
        rows = rows.filter(series__series_instance_uid=series_uid)
    if sop_uid is not None:
        rows = rows.filter(sop_instance_uid=sop_uid)
    found = list(
        rows.order_by("series__series_number", "series_id", "instance_number", "id").values_list(
            "series__series_instance_uid", "sop_instance_uid", "number_of_frames", "metadata"
        )
    )
    if not found:
        raise Http404
    base = attributes.study_url(base_url(request), study.study_instance_uid)
    results = [
        attributes.fill_bulk_data_uris(metadata, f"{base}/series/{series}/instances/{sop}", frames)
        for series, sop, frames, metadata in found
    ]
    return HttpResponse(
        json.dumps(results, separators=(",", ":")), content_type="application/dicom+json"
    )


def study_metadata(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = requested_study(request, study_uid, "study metadata")
    return _metadata(request, study, None, None)


def series_metadata(request: HttpRequest, study_uid: str, series_uid: str) -> HttpResponse:
    study = requested_study(request, study_uid, "series metadata", series=series_uid)
    return _metadata(request, study, series_uid, None)


def instance_metadata(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    study = requested_study(request, study_uid, "instance metadata", instance=sop_uid)
    return _metadata(request, study, series_uid, sop_uid)


# --- frames and bulk data --------------------------------------------------------------------


def _frame_numbers(text: str, count: int) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise DicomwebError(400, _("Frames are listed as numbers: 1,2,3.")) from None
    for number in numbers:
        if not 1 <= number <= count:
            raise DicomwebError(
                404,
                _("Frame %(frame)s does not exist: the instance has %(count)s.")
                % {"frame": number, "count": count},
            )
    return numbers


def _frame_choice(request: HttpRequest, stored: str) -> str:
    """The transfer syntax to send frames in ("*" = as stored), from the Accept header."""
    stored_media = FRAME_MEDIA_TYPES.get(stored, OCTET_STREAM)
    for media in parse_accept(request.headers.get("Accept", "")):
        kind = media.media_type
        if kind == "multipart/related":
            kind = media.params.get("type", OCTET_STREAM).lower()
        syntax = media.params.get("transfer-syntax", "")
        syntax = "" if syntax == "*" else syntax  # "*": any syntax of this media type
        if kind in ANY:
            return syntax or AS_STORED
        if kind == stored_media and syntax in ("", stored):
            return AS_STORED
        if kind == OCTET_STREAM:
            native = UID(stored)
            is_native = not native.is_compressed and native.is_little_endian
            return AS_STORED if is_native and not syntax else syntax or ExplicitVRLittleEndian
        if kind in DEFAULT_SYNTAX_OF_MEDIA:
            return syntax or DEFAULT_SYNTAX_OF_MEDIA[kind]
    raise DicomwebError(
        406,
        _(
            "Frames are sent as multipart/related; type=application/octet-stream or the "
            "media type of their compression."
        ),
    )


def requested_instance(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, what: str, **detail: str
) -> Instance:
    """The instance asked for, its study's access checked and audited as requested_study does
    (in one query when it exists: frames are asked for hundreds at a time)."""
    return instance_for(
        user=request.user,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        audit_action=AuditEvent.Action.VIEW,
        detail={"dicomweb": what, "instance": sop_uid, **detail},
        audit_once_per=what if what in BURST_READS else "",
    )


def instance_frames(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, frames: str
) -> HttpResponse:
    instance = requested_instance(request, study_uid, series_uid, sop_uid, "frames", frames=frames)
    if not instance.has_pixels:
        raise DicomwebError(404, _("The instance has no pixel data."))
    numbers = _frame_numbers(frames, instance.number_of_frames)
    choice = _frame_choice(request, instance.transfer_syntax_uid)
    dataset = load_dataset(instance)
    syntax = instance.transfer_syntax_uid if choice == AS_STORED else choice
    try:
        if choice != AS_STORED:
            dataset = transcode(dataset, choice)
        contents = [frame_bytes(dataset, number - 1) for number in numbers]
    except NotTranscodable as error:
        raise DicomwebError(406, _("Cannot send the frames so: %s") % error) from None
    media = FRAME_MEDIA_TYPES.get(syntax, OCTET_STREAM)
    if media == OCTET_STREAM:
        # Native frames are little endian whatever the file's encoding (frame_bytes swaps a
        # big endian file's): PS3.18 names them by explicit VR little endian.
        syntax = ExplicitVRLittleEndian
    boundary = new_boundary()
    body = b"".join(
        part_header(boundary, f"{media}; transfer-syntax={syntax}") + content + b"\r\n"
        for content in contents
    ) + closing_delimiter(boundary)
    return HttpResponse(
        body, content_type=f'multipart/related; type="{media}"; boundary={boundary}'
    )


def instance_bulkdata(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, tag: str
) -> HttpResponse:
    instance = requested_instance(request, study_uid, series_uid, sop_uid, "bulk data", tag=tag)
    dataset = load_dataset(instance)
    try:
        value = dataset[int(tag, 16)].value
    except (KeyError, ValueError):
        raise Http404 from None
    if not isinstance(value, bytes):
        raise Http404
    boundary = new_boundary()
    body = part_header(boundary, OCTET_STREAM) + value + b"\r\n" + closing_delimiter(boundary)
    return HttpResponse(
        body, content_type=f'multipart/related; type="{OCTET_STREAM}"; boundary={boundary}'
    )
