"""Matching DICOM query keys over the imaging index: shared by QIDO-RS and C-FIND.

`filters` maps a DICOM keyword to a DICOM matching string (PS3.4 C.2.2.2):

- "" or "*": universal match (the key is only asked to be returned);
- a single value: exact match (person names: case-insensitive);
- wildcards "*" and "?" (PS3.4 C.2.2.2.4);
- a list of values separated by a backslash: any of them (UID list matching, C.2.2.2.2; we
  accept it for every key, e.g. ModalitiesInStudy "CT\\MR");
- date and time ranges "20260101-20261231", "-20261231", "20260101-" (C.2.2.2.5).

Keys this module does not know are ignored. A value that cannot be a match for its key (a
date that is not a date, a number that is not a number) raises `QueryError`, so an edge can
answer with a clear message. The callers have already restricted the queryset to what the
asker may see: nothing here checks access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from imaging.models import Instance, Series, Study


class QueryError(ValueError):
    """A query value that cannot match its key; the message says which and why."""


@dataclass(frozen=True)
class Key:
    field: str
    kind: str  # "text", "name", "uid", "date", "time", "int", "list"


STUDY_KEYS: dict[str, Key] = {
    "PatientID": Key("dicom_patient_id", "text"),
    "PatientName": Key("dicom_patient_name", "name"),
    "PatientBirthDate": Key("dicom_birth_date", "date"),
    "PatientSex": Key("dicom_sex", "text"),
    "StudyInstanceUID": Key("study_instance_uid", "uid"),
    "StudyDate": Key("study_date", "date"),
    "StudyTime": Key("study_time", "time"),
    "AccessionNumber": Key("accession_number", "text"),
    "StudyID": Key("study_id", "text"),
    "StudyDescription": Key("description", "text"),
    "ModalitiesInStudy": Key("modalities", "list"),
    "ReferringPhysicianName": Key("referring_physician", "name"),
}
SERIES_KEYS: dict[str, Key] = {
    "SeriesInstanceUID": Key("series_instance_uid", "uid"),
    "Modality": Key("modality", "text"),
    "SeriesNumber": Key("series_number", "int"),
    "SeriesDescription": Key("description", "text"),
    "BodyPartExamined": Key("body_part", "text"),
    "SeriesDate": Key("series_date", "date"),
}
INSTANCE_KEYS: dict[str, Key] = {
    "SOPInstanceUID": Key("sop_instance_uid", "uid"),
    "SOPClassUID": Key("sop_class_uid", "uid"),
    "InstanceNumber": Key("instance_number", "int"),
    "NumberOfFrames": Key("number_of_frames", "int"),
    "Rows": Key("rows", "int"),
    "Columns": Key("columns", "int"),
}

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _wildcard_q(field: str, value: str, *, ignore_case: bool) -> Q:
    """Wildcard matching: a prefix lookup where it suffices, a regex otherwise."""
    body = value.rstrip("*")
    if ignore_case and value.endswith("*") and not _has_wildcard(body):
        return Q(**{f"{field}__istartswith": body})
    # Case-sensitive wildcards go through a regex: SQLite's LIKE ignores case.
    pattern = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in value
    )
    return Q(**{f"{field}__{'iregex' if ignore_case else 'regex'}": f"^{pattern}$"})


def _text_q(field: str, value: str, *, ignore_case: bool) -> Q:
    if _has_wildcard(value):
        return _wildcard_q(field, value, ignore_case=ignore_case)
    return Q(**{f"{field}__{'iexact' if ignore_case else 'exact'}": value})


def _range_q(keyword: str, field: str, value: str, pattern: re.Pattern[str]) -> Q:
    def check(part: str) -> str:
        if not pattern.match(part):
            raise QueryError(
                _("%(key)s: %(value)r is not a valid DICOM date or time (range)")
                % {"key": keyword, "value": value}
            )
        return part

    if "-" not in value:
        return Q(**{field: check(value)}) if pattern is _DATE else _time_exact(field, check(value))
    start, _dash, end = value.partition("-")
    if not start and not end:
        raise QueryError(_("%s: a range needs a start or an end") % keyword)
    condition = ~Q(**{field: ""})  # an empty value is in no range
    if start:
        condition &= Q(**{f"{field}__gte": check(start)})
    if end:
        check(end)
        # "-1200" includes 12:00:59.9: compare with the end padded to the largest time.
        condition &= Q(**{f"{field}__lte": end if pattern is _DATE else end + "~"})
    return condition


def _time_exact(field: str, value: str) -> Q:
    # A stored "101500.000" is the time "1015" asks for, at a coarser precision.
    return Q(**{f"{field}__startswith": value})


def _int_q(keyword: str, field: str, value: str) -> Q:
    try:
        return Q(**{field: int(value)})
    except ValueError as error:
        raise QueryError(
            _("%(key)s: %(value)r is not a whole number") % {"key": keyword, "value": value}
        ) from error


def _list_q(field: str, value: str) -> Q:
    # A multi-valued attribute stored joined with "\": the query value matches any member.
    if _has_wildcard(value):
        inner = "".join(
            "[^\\\\]*" if char == "*" else "[^\\\\]" if char == "?" else re.escape(char)
            for char in value
        )
        return Q(**{f"{field}__regex": f"(^|\\\\){inner}(\\\\|$)"})
    return (
        Q(**{field: value})
        | Q(**{f"{field}__startswith": value + "\\"})
        | Q(**{f"{field}__endswith": "\\" + value})
        | Q(**{f"{field}__contains": "\\" + value + "\\"})
    )


def _value_q(keyword: str, key: Key, field: str, value: str) -> Q:
    if key.kind == "date":
        return _range_q(keyword, field, value, _DATE)
    if key.kind == "time":
        return _range_q(keyword, field, value, _TIME)
    if key.kind == "int":
        return _int_q(keyword, field, value)
    if key.kind == "list":
        return _list_q(field, value)
    if key.kind == "uid":
        return Q(**{field: value})
    return _text_q(field, value, ignore_case=key.kind == "name")


def _key_q(keyword: str, key: Key, prefix: str, raw: str) -> Q | None:
    value = raw.strip()
    if value in ("", "*"):
        return None  # universal match
    values = [part.strip() for part in value.split("\\") if part.strip()]
    if not values:
        return None
    field = prefix + key.field
    return reduce(or_, (_value_q(keyword, key, field, part) for part in values))


def _apply(
    queryset: QuerySet,
    filters: Mapping[str, str],
    levels: list[tuple[str, dict[str, Key]]],
) -> QuerySet:
    conditions = Q()
    for keyword, raw in filters.items():
        for prefix, keys in levels:
            key = keys.get(keyword)
            if key is not None:
                condition = _key_q(keyword, key, prefix, str(raw if raw is not None else ""))
                if condition is not None:
                    conditions &= condition
                break
    return queryset.filter(conditions) if conditions else queryset


def match_studies(studies: QuerySet[Study], filters: Mapping[str, str]) -> QuerySet[Study]:
    """The studies matching every known key of `filters` (PS3.4 C.2.2.2)."""
    return _apply(studies, filters, [("", STUDY_KEYS)])


def match_series(series: QuerySet[Series], filters: Mapping[str, str]) -> QuerySet[Series]:
    """The series matching every known key of `filters`; study keys match the parent study."""
    return _apply(series, filters, [("", SERIES_KEYS), ("study__", STUDY_KEYS)])


def match_instances(
    instances: QuerySet[Instance], filters: Mapping[str, str]
) -> QuerySet[Instance]:
    """The instances matching every known key of `filters`; series and study keys match the
    parents."""
    return _apply(
        instances,
        filters,
        [("", INSTANCE_KEYS), ("series__", SERIES_KEYS), ("series__study__", STUDY_KEYS)],
    )


def known_keywords(level: str) -> set[str]:
    """The keywords that can be matched at `level` ("STUDY", "SERIES", "IMAGE")."""
    levels: dict[str, list[dict[str, Key]]] = {
        "STUDY": [STUDY_KEYS],
        "SERIES": [STUDY_KEYS, SERIES_KEYS],
        "IMAGE": [STUDY_KEYS, SERIES_KEYS, INSTANCE_KEYS],
    }
    return {keyword for keys in levels[level] for keyword in keys}
