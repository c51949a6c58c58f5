"""STOW-RS (PS3.18 10.5): storing instances sent as multipart/related; type="application/dicom".

The body is read part by part into temporary files; only when it has been read whole, to its
closing boundary, is anything received (a body cut short stores nothing). Every part then goes
through `receive_file`, the one door for every arrival, and is indexed like any other file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from accounts.models import Organization
from imaging.dicomweb import attributes
from imaging.dicomweb.auth import DicomwebError
from imaging.dicomweb.multipart import (
    MalformedMultipart,
    ReceivedPart,
    parse_media_type,
    read_multipart,
)
from imaging.dicomweb.qido import base_url
from imaging.models import ReceivedFile
from imaging.services.ingest import queue_ingest_of, receive_file
from imaging.services.uploads import uploading_organizations

# PS3.18 Table 10.5.3-1 and PS3.4 Annex B failure reasons.
PROCESSING_FAILURE = 0x0110
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111
STUDY_UID_MISMATCH = 0xC409  # as dcm4chee answers a part that belongs to another study


@dataclass
class Arrival:
    part: ReceivedPart
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    failure: int = 0
    received: ReceivedFile | None = None


def _receiving_organization(request: HttpRequest) -> Organization:
    # The same clinic an upload from the browser would go to.
    organizations = uploading_organizations(request.user)
    if not organizations:
        raise DicomwebError(
            403, _("Only clinicians store studies: your account is not a clinician anywhere.")
        )
    return organizations[0]


def _boundary(request: HttpRequest) -> str:
    content_type = parse_media_type(request.headers.get("Content-Type", ""))
    if content_type.media_type != "multipart/related":
        raise DicomwebError(
            415, _('Send the instances as multipart/related; type="application/dicom".')
        )
    kind = content_type.params.get("type", "application/dicom").lower()
    if kind != "application/dicom":
        raise DicomwebError(415, _("Only application/dicom parts are accepted, not %s.") % kind)
    return content_type.params.get("boundary", "")


def _identify(arrival: Arrival, study_uid: str | None) -> None:
    """Read the UIDs from the part's header (up to the pixel data): the answer names them."""
    stream = arrival.part.file
    try:
        header = dcmread(stream, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError):
        arrival.failure = CANNOT_UNDERSTAND
        return
    finally:
        stream.seek(0)
    arrival.sop_class_uid = str(header.get("SOPClassUID", "") or "")
    arrival.sop_instance_uid = str(header.get("SOPInstanceUID", "") or "")
    arrival.study_instance_uid = str(header.get("StudyInstanceUID", "") or "")
    arrival.series_instance_uid = str(header.get("SeriesInstanceUID", "") or "")
    if study_uid is not None and arrival.study_instance_uid != study_uid:
        arrival.failure = STUDY_UID_MISMATCH


def _outcome(arrival: Arrival) -> int:
    if arrival.failure or arrival.received is None:
        return arrival.failure or PROCESSING_FAILURE
    status = arrival.received.status
    if status == ReceivedFile.Status.FAILED:
        return CANNOT_UNDERSTAND
    if status == ReceivedFile.Status.CONFLICT:
        return DUPLICATE_SOP_INSTANCE
    return 0  # indexed, already had it, or queued for indexing (reported as received)


def _answer(request: HttpRequest, arrivals: list[Arrival], study_uid: str | None) -> HttpResponse:
    base = base_url(request)
    referenced, failed = [], []
    for arrival in arrivals:
        item = {
            "00081150": attributes.element("UI", arrival.sop_class_uid),
            "00081155": attributes.element("UI", arrival.sop_instance_uid),
        }
        failure = _outcome(arrival)
        if failure:
            item["00081197"] = attributes.element("US", failure)
            failed.append(item)
        else:
            item["00081190"] = attributes.element(
                "UR",
                attributes.instance_url(
                    base,
                    arrival.study_instance_uid,
                    arrival.series_instance_uid,
                    arrival.sop_instance_uid,
                ),
            )
            referenced.append(item)
    body: dict = {}
    studies = {a.study_instance_uid for a in arrivals if a.study_instance_uid and not _outcome(a)}
    if study_uid or len(studies) == 1:
        body["00081190"] = attributes.element(
            "UR", attributes.study_url(base, study_uid or studies.pop())
        )
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    # PS3.18 10.5.3: 200 all stored, 202 some failed, 409 none stored.
    status = 200 if not failed else 202 if referenced else 409
    return HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/dicom+json",
    )


def store_instances(request: HttpRequest, study_uid: str | None = None) -> HttpResponse:
    """Receive every part of the body (a part that is not DICOM is kept too, marked failed by
    the ingest, as every arrival is); answer which were stored and which failed."""
    organization = _receiving_organization(request)
    boundary = _boundary(request)
    try:
        parts = read_multipart(request.read, boundary)
    except MalformedMultipart as error:
        raise DicomwebError(
            400, _("The body is not a valid multipart message: %s") % error
        ) from None
    if not parts:
        raise DicomwebError(400, _("The body has no instances."))
    arrivals = [Arrival(part) for part in parts]
    try:
        for arrival in arrivals:
            _identify(arrival, study_uid)
        with transaction.atomic():
            for number, arrival in enumerate(arrivals, start=1):
                if arrival.failure == STUDY_UID_MISMATCH:
                    continue  # the client named the study: a part of another is refused
                arrival.received = receive_file(
                    content=arrival.part.file,
                    source=ReceivedFile.Source.STOW,
                    organization=organization,
                    received_by=request.user,
                    original_name=arrival.sop_instance_uid or f"STOW part {number}",
                    queue_ingest=False,
                )
            # After commit; runs at once where tasks are eager, otherwise queued.
            queue_ingest_of([a.received.pk for a in arrivals if a.received is not None])
    finally:
        for arrival in arrivals:
            arrival.part.file.close()
    ids = [a.received.pk for a in arrivals if a.received is not None]
    statuses = ReceivedFile.objects.in_bulk(ids)
    for arrival in arrivals:
        if arrival.received is not None:
            arrival.received = statuses[arrival.received.pk]
    return _answer(request, arrivals, study_uid)
