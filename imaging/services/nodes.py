"""DICOM nodes (registered AEs): who may associate, and what a node may query and retrieve.

A registered `DicomNode` acts for its organization. It may associate only with its own AE
title and, when the node has a host, only from that address. It may query and retrieve the
studies its organization received or whose patient belongs to its organization
(`studies_for_node`). Every refusal and every answer is audited, under the label
"DICOM <AE title>" (a node is not a user).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from accounts.models import AuditEvent
from accounts.services.audit import record_event
from imaging.models import DicomNode, Instance, Series, Study
from imaging.selectors import record_study_reads
from imaging.services.query import QueryError, match_instances, match_series, match_studies

logger = logging.getLogger(__name__)

# The unique key of each query/retrieve level (PS3.4 C.6.1.1 and C.6.2.1).
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
LEVELS = list(UNIQUE_KEYS)


class RetrieveRefused(ValueError):
    """A retrieve request that names nothing to retrieve; the message says why."""


def actor_label(ae_title: str) -> str:
    return f"DICOM {ae_title.strip()}"


def _addresses_of(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


def is_from_host(node: DicomNode, address: str) -> bool:
    """Whether an association from `address` may be this node's (any address if no host)."""
    if not node.host:
        return True
    return address == node.host or address in _addresses_of(node.host)


def authorize_association(*, calling_ae: str, address: str) -> DicomNode | None:
    """The active node registered with this calling AE title, if it may associate from
    `address`; otherwise None, and the refusal is audited."""
    ae_title = calling_ae.strip()
    node = (
        DicomNode.objects.select_related("organization")
        .filter(ae_title=ae_title, is_active=True)
        .first()
    )
    if node is not None and is_from_host(node, address):
        return node
    reason = "calling AE title not recognized" if node is None else "address not allowed"
    logger.warning("DICOM association from %s as %r refused: %s", address, ae_title, reason)
    record_event(
        actor=None,
        actor_label=actor_label(ae_title),
        action=AuditEvent.Action.LOGIN_FAILED,
        outcome=AuditEvent.Outcome.DENIED,
        region=node.organization.region if node else "",
        detail={"calling_ae": ae_title, "address": address, "reason": reason},
    )
    return None


def record_refused_service(*, node: DicomNode, service: str, address: str) -> None:
    """Audit a request the node is not allowed to make (may_store / may_query)."""
    record_event(
        actor=None,
        actor_label=actor_label(node.ae_title),
        action=AuditEvent.Action.LOGIN_FAILED,
        outcome=AuditEvent.Outcome.DENIED,
        region=node.organization.region,
        detail={"service": service, "address": address, "reason": "service not allowed"},
    )


def studies_for_node(node: DicomNode) -> QuerySet[Study]:
    """The studies `node` may query and retrieve: received by its organization, or of a
    patient of its organization."""
    return Study.objects.filter(
        Q(organization_id=node.organization_id) | Q(patient__organization_id=node.organization_id)
    ).select_related("organization")


def move_destination_for(*, node: DicomNode, ae_title: str) -> DicomNode | None:
    """The registered destination a C-MOVE from `node` may send to: an active node of the same
    organization with a host and a port. None for anything else (answered with 0xA801)."""
    return (
        DicomNode.objects.filter(
            ae_title=ae_title.strip(),
            is_active=True,
            organization_id=node.organization_id,
            port__gt=0,
        )
        .exclude(host="")
        .first()
    )


def record_node_reads(
    *, node: DicomNode, studies: Iterable[Study], action: str, detail: Mapping[str, object]
) -> None:
    """One audit event per study a node was answered about or sent."""
    record_study_reads(
        user=None,
        studies=list(studies),
        action=action,
        channel_detail=dict(detail),
        actor_label=actor_label(node.ae_title),
    )


def instances_to_retrieve(
    *, node: DicomNode, identifier: Dataset, service: str, detail: Mapping[str, object]
) -> list[Instance]:
    """The instances a C-MOVE / C-GET (`service`) asks for, among those `node` may retrieve.
    The studies they belong to are audited as exported, with `detail`.

    Only the unique keys of the level and the levels above it count (hierarchical retrieve,
    PS3.4 C.4.2.2.1); the key of the level itself must be given, so that an empty identifier
    never means "everything"."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in UNIQUE_KEYS:
        raise RetrieveRefused(f"unknown query/retrieve level {level!r}")
    filters = _filters(identifier)
    if not filters.get(UNIQUE_KEYS[level], "").strip():
        raise RetrieveRefused(f"{UNIQUE_KEYS[level]} is required at the {level} level")
    keys = {
        UNIQUE_KEYS[upper]: filters.get(UNIQUE_KEYS[upper], "")
        for upper in LEVELS[: LEVELS.index(level) + 1]
    }
    # A UID list matches any of its UIDs; wildcards have no place in a retrieve.
    if any("*" in value or "?" in value for value in keys.values()):
        raise RetrieveRefused("wildcards are not allowed in a retrieve")
    instances = list(
        match_instances(Instance.objects.filter(series__study__in=studies_for_node(node)), keys)
        .select_related("series__study__organization", "received_file")
        .order_by("series__study_id", "series__series_number", "series_id", "instance_number")
    )
    record_node_reads(
        node=node,
        studies=_distinct_studies(instance.series.study for instance in instances),
        action=AuditEvent.Action.EXPORT,
        detail={"service": service, "level": level, "instances": len(instances), **detail},
    )
    return instances


# --- C-FIND ----------------------------------------------------------------------------------


class FindRefused(ValueError):
    """A C-FIND we cannot answer: `status` is the DIMSE failure status, the message why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
# Never sent back as keys to fill: they describe the request itself.
_REQUEST_KEYWORDS = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}


def _filters(identifier: Dataset) -> dict[str, str]:
    """The identifier's keys as DICOM matching strings for imaging.services.query."""
    filters: dict[str, str] = {}
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in _REQUEST_KEYWORDS:
            continue
        value = element.value
        if element.VR == "SQ" or value is None:
            filters[keyword] = ""
        elif isinstance(value, list | tuple | MultiValue):
            filters[keyword] = "\\".join(str(part) for part in value)
        else:
            filters[keyword] = str(value)
    return filters


def _patient_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "PatientID": row["dicom_patient_id"],
        "PatientName": row["dicom_patient_name"],
        "PatientBirthDate": row["dicom_birth_date"],
        "PatientSex": row["dicom_sex"],
        "NumberOfPatientRelatedStudies": row["studies"],
        "NumberOfPatientRelatedSeries": row["series"] or 0,
        "NumberOfPatientRelatedInstances": row["instances"] or 0,
    }


def _study_values(study: Study) -> dict[str, Any]:
    return {
        "PatientID": study.dicom_patient_id,
        "PatientName": study.dicom_patient_name,
        "PatientBirthDate": study.dicom_birth_date,
        "PatientSex": study.dicom_sex,
        "StudyInstanceUID": study.study_instance_uid,
        "StudyDate": study.study_date,
        "StudyTime": study.study_time,
        "AccessionNumber": study.accession_number,
        "StudyID": study.study_id,
        "StudyDescription": study.description,
        "ModalitiesInStudy": study.modality_list,
        "ReferringPhysicianName": study.referring_physician,
        "NumberOfStudyRelatedSeries": study.number_of_series,
        "NumberOfStudyRelatedInstances": study.number_of_instances,
    }


def _series_values(series: Series) -> dict[str, Any]:
    return {
        **_study_values(series.study),
        "SeriesInstanceUID": series.series_instance_uid,
        "Modality": series.modality,
        "SeriesNumber": series.series_number,
        "SeriesDescription": series.description,
        "BodyPartExamined": series.body_part,
        "SeriesDate": series.series_date,
        "NumberOfSeriesRelatedInstances": series.number_of_instances,
    }


def _instance_values(instance: Instance) -> dict[str, Any]:
    return {
        **_series_values(instance.series),
        "SOPInstanceUID": instance.sop_instance_uid,
        "SOPClassUID": instance.sop_class_uid,
        "InstanceNumber": instance.instance_number,
        "NumberOfFrames": instance.number_of_frames,
        "Rows": instance.rows,
        "Columns": instance.columns,
    }


def _from_metadata(metadata: Mapping[str, Any], element: DataElement) -> DataElement | None:
    """A requested attribute the index has no column for, from the instance's DICOM JSON."""
    tag = f"{int(element.tag):08X}"
    if tag not in metadata:
        return None
    try:
        return Dataset.from_json({tag: metadata[tag]})[element.tag]
    except Exception:  # a value pydicom cannot read back: answer it empty
        return None


def _response(
    *,
    identifier: Dataset,
    level: str,
    values: Mapping[str, Any],
    unique_keys: list[str],
    retrieve_ae_title: str,
    metadata: Mapping[str, Any] | None = None,
) -> Dataset:
    response = Dataset()
    response.SpecificCharacterSet = "ISO_IR 192"  # names may be Cyrillic: UTF-8
    response.QueryRetrieveLevel = level
    response.RetrieveAETitle = retrieve_ae_title
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in _REQUEST_KEYWORDS:
            continue
        if keyword in values:
            value = values[keyword]
            setattr(response, keyword, value if value not in ("", None) else None)
            continue
        found = _from_metadata(metadata, element) if metadata else None
        # A key we do not hold is returned empty (PS3.4 C.2.2.1.3).
        response.add(
            found or DataElement(element.tag, element.VR, [] if element.VR == "SQ" else None)
        )
    for keyword in unique_keys:
        if keyword not in response:
            setattr(response, keyword, values.get(keyword) or None)
    return response


def find_responses(
    *, node: DicomNode, identifier: Dataset, is_patient_root: bool, retrieve_ae_title: str
) -> list[Dataset]:
    """The C-FIND answers for `node` (PS3.4 C.4.1): one identifier per matching patient,
    study, series or instance among `studies_for_node(node)`, with the requested keys filled
    from the index. Each study answered about is audited."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    levels = LEVELS if is_patient_root else LEVELS[1:]
    if level not in levels:
        raise FindRefused(IDENTIFIER_DOES_NOT_MATCH, f"QueryRetrieveLevel {level!r} not allowed")
    unique_keys = [UNIQUE_KEYS[upper] for upper in levels[: levels.index(level) + 1]]
    filters = _filters(identifier)
    studies = studies_for_node(node)
    try:
        answers = _find(level, studies, filters)
    except QueryError as error:
        raise FindRefused(UNABLE_TO_PROCESS, str(error)) from error
    record_node_reads(
        node=node,
        studies=answers.studies,
        action=AuditEvent.Action.LIST,
        detail={"service": "C-FIND", "level": level, "matches": len(answers.rows)},
    )
    return [
        _response(
            identifier=identifier,
            level=level,
            values=values,
            unique_keys=unique_keys,
            retrieve_ae_title=retrieve_ae_title,
            metadata=metadata,
        )
        for values, metadata in answers.rows
    ]


@dataclass
class _Answers:
    rows: list[tuple[dict[str, Any], Mapping[str, Any] | None]]
    studies: list[Study]


def _find(level: str, studies: QuerySet[Study], filters: Mapping[str, str]) -> _Answers:
    if level == "PATIENT":
        matched = list(match_studies(studies, filters))
        groups = (
            Study.objects.filter(pk__in=[study.pk for study in matched])
            .values("dicom_patient_id", "dicom_patient_name", "dicom_birth_date", "dicom_sex")
            .annotate(
                studies=Count("id"),
                series=Sum("number_of_series"),
                instances=Sum("number_of_instances"),
            )
            .order_by("dicom_patient_id", "dicom_patient_name")
        )
        return _Answers([(_patient_values(row), None) for row in groups], matched)
    if level == "STUDY":
        matched = list(match_studies(studies, filters))
        return _Answers([(_study_values(study), None) for study in matched], matched)
    if level == "SERIES":
        series = match_series(
            Series.objects.filter(study__in=studies).select_related("study__organization"),
            filters,
        ).order_by("study_id", "series_number", "id")
        rows = [(_series_values(one), None) for one in series]
        return _Answers(rows, _distinct_studies(one.study for one in series))
    instances = match_instances(
        Instance.objects.filter(series__study__in=studies).select_related(
            "series__study__organization"
        ),
        filters,
    ).order_by("series__study_id", "series_id", "instance_number", "id")
    rows = [(_instance_values(one), one.metadata) for one in instances]
    return _Answers(rows, _distinct_studies(one.series.study for one in instances))


def _distinct_studies(studies: Iterable[Study]) -> list[Study]:
    return list({study.pk: study for study in studies}.values())
