"""QIDO-RS (PS3.18 10.6): searching studies, series and instances.

The matching itself is imaging.services.query (shared with C-FIND); here: the query
parameters, the answer in DICOM JSON, and the audit of what was shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils.translation import gettext as _
from pydicom.datadict import dictionary_keyword, tag_for_keyword

from accounts.models import AuditEvent, User
from imaging.dicomweb import attributes
from imaging.dicomweb.auth import DicomwebError
from imaging.models import Instance, Series, Study
from imaging.selectors import record_study_reads, studies_visible_to, study_for
from imaging.services.query import known_keywords, match_instances, match_series, match_studies

MAX_RESULTS = 1000
RESERVED = {"limit", "offset", "includefield", "fuzzymatching"}
# QIDO-RS writes a UID list with commas (PS3.18 8.3.4.1); the index matching takes backslashes.
LIST_KEYWORDS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"}
LIST_KEYWORDS |= {"ModalitiesInStudy", "Modality"}


@dataclass
class Search:
    filters: dict[str, str] = field(default_factory=dict)
    include: set[str] = field(default_factory=set)  # tags, "8 hex digits"
    include_all: bool = False
    limit: int = MAX_RESULTS
    offset: int = 0
    unsupported: list[str] = field(default_factory=list)


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("dicomweb:studies")).removesuffix("/studies")


def _tag_of(attribute: str) -> tuple[str, str]:
    """An attribute given as a keyword or a tag → (keyword, tag); unknown → 400."""
    text = attribute.strip()
    if len(text) == 8 and all(char in "0123456789abcdefABCDEF" for char in text):
        keyword = dictionary_keyword(int(text, 16)) if int(text, 16) else ""
        return keyword, text.upper()
    tag = tag_for_keyword(text)
    if tag is None:
        raise DicomwebError(400, _("Unknown attribute: %s") % attribute)
    return text, f"{tag:08X}"


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise DicomwebError(400, _("%s must be a whole number (0 or more).") % name)
    return int(value)


def parse_search(query: QueryDict, level: str) -> Search:
    """The QIDO-RS query parameters: matching keys, includefield, limit, offset, fuzzymatching."""
    search = Search()
    matchable = known_keywords(level)
    for name in query:
        values = query.getlist(name)
        if name == "limit":
            search.limit = min(_non_negative(name, values[-1]), MAX_RESULTS)
        elif name == "offset":
            search.offset = _non_negative(name, values[-1])
        elif name == "fuzzymatching":
            if values[-1].lower() not in ("true", "false"):
                raise DicomwebError(400, _("fuzzymatching must be true or false."))
            # Accepted and ignored: matching here is exact or wildcard.
        elif name == "includefield":
            for value in values:
                for item in value.split(","):
                    if item.strip().lower() == "all":
                        search.include_all = True
                    elif item.strip():
                        search.include.add(_tag_of(item)[1])
        else:
            if "." in name:
                search.unsupported.append(name)  # sequence matching is not supported
                continue
            keyword, _tag = _tag_of(name)
            if keyword not in matchable:
                search.unsupported.append(keyword or name)
                continue
            value = "\\".join(values)
            if keyword in LIST_KEYWORDS:
                value = value.replace(",", "\\")
            search.filters[keyword] = value
    return search


def _answer(
    request: HttpRequest, results: list[dict[str, Any]], search: Search, *, has_more: bool
) -> HttpResponse:
    # An empty result is an empty array with 200 (dicomweb-client reads both that and 204).
    response = HttpResponse(
        json.dumps(results, separators=(",", ":")), content_type="application/dicom+json"
    )
    warnings = []
    if search.unsupported:
        warnings.append(
            "The following attributes are not supported for matching: "
            + ", ".join(search.unsupported)
        )
    if has_more:
        warnings.append("There are more results: ask again with offset")
    if warnings:
        response["Warning"] = ", ".join(f'299 telemed "{text}"' for text in warnings)
    return response


def _page(queryset: QuerySet, search: Search) -> tuple[list, bool]:
    rows = list(queryset[search.offset : search.offset + search.limit + 1])
    return rows[: search.limit], len(rows) > search.limit


def _selected(
    found: dict[str, attributes.Element], search: Search, default_tags: Iterable[str]
) -> dict[str, attributes.Element]:
    if search.include_all:
        return dict(sorted(found.items()))
    wanted = set(default_tags) | search.include
    return {tag: found[tag] for tag in sorted(wanted) if tag in found}


def _first_instance_metadata(
    owners: QuerySet, owner_path: str, ids: list[int]
) -> dict[int, dict[str, Any]]:
    """For attributes the index does not keep: the metadata of one instance of each study or
    series, in two queries."""
    first = Instance.objects.filter(**{owner_path: OuterRef("pk")}).order_by("id").values("id")[:1]
    pairs = dict(
        owners.filter(pk__in=ids).annotate(first=Subquery(first)).values_list("first", "pk")
    )
    metadata = Instance.objects.filter(pk__in=[pk for pk in pairs if pk]).values_list(
        "pk", "metadata"
    )
    return {pairs[pk]: value for pk, value in metadata}


def _extra(
    search: Search, owners: QuerySet, owner_path: str, rows: list, known: Iterable[str]
) -> dict[int, dict[str, Any]]:
    if not (search.include - set(known)):
        return {}
    return _first_instance_metadata(owners, owner_path, [row.pk for row in rows])


def _with_extra(found: dict[str, Any], metadata: dict[str, Any] | None, search: Search) -> None:
    for tag in search.include - found.keys():
        if metadata and tag in metadata and "BulkDataURI" not in metadata[tag]:
            found[tag] = metadata[tag]


STUDY_TAGS = [
    "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
    "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010",
    "00201206", "00201208", "00081030",
]  # fmt: skip
SERIES_TAGS = [
    "00080005", "00080056", "00080060", "0008103E", "00081190", "0020000D", "0020000E",
    "00200011", "00201209",
]  # fmt: skip
INSTANCE_TAGS = [
    "00080005", "00080016", "00080018", "00080056", "00081190", "0020000D", "0020000E",
    "00200013", "00280008", "00280010", "00280011",
]  # fmt: skip


def _audit(user: User, studies: Iterable[Study], what: str) -> None:
    unique = {study.pk: study for study in studies}
    record_study_reads(
        user=user,
        studies=list(unique.values()),
        action=AuditEvent.Action.LIST,
        channel_detail={"dicomweb": what},
    )


def search_studies(request: HttpRequest) -> HttpResponse:
    search = parse_search(request.GET, "STUDY")
    found = match_studies(studies_visible_to(request.user), search.filters)
    studies, has_more = _page(found.order_by("-study_date", "-study_time", "-id"), search)
    base = base_url(request)
    extra = _extra(search, Study.objects.all(), "series__study", studies, STUDY_TAGS)
    results = []
    for study in studies:
        values = attributes.study_attributes(study, base)
        _with_extra(values, extra.get(study.pk), search)
        results.append(_selected(values, search, STUDY_TAGS))
    _audit(request.user, studies, "search studies")
    return _answer(request, results, search, has_more=has_more)


def search_series(request: HttpRequest, study_uid: str | None = None) -> HttpResponse:
    search = parse_search(request.GET, "SERIES")
    if study_uid is not None:
        study = study_for(
            user=request.user,
            study_uid=study_uid,
            audit_action=AuditEvent.Action.LIST,
            detail={"dicomweb": "search series"},
        )
        series_set = Series.objects.filter(study=study)
        default_tags = SERIES_TAGS
    else:
        visible = studies_visible_to(request.user).values("pk")
        series_set = Series.objects.filter(study__in=visible)
        default_tags = SERIES_TAGS + STUDY_TAGS
    found = match_series(series_set.select_related("study__organization"), search.filters)
    series_page, has_more = _page(found.order_by("study_id", "series_number", "id"), search)
    base = base_url(request)
    extra = _extra(search, Series.objects.all(), "series", series_page, default_tags)
    results = []
    for series in series_page:
        study = series.study
        values = attributes.series_attributes(series, study.study_instance_uid, base)
        if study_uid is None:
            values = {**attributes.study_attributes(study, base), **values}
        _with_extra(values, extra.get(series.pk), search)
        results.append(_selected(values, search, default_tags))
    if study_uid is None:
        _audit(request.user, [series.study for series in series_page], "search series")
    return _answer(request, results, search, has_more=has_more)


def search_instances(
    request: HttpRequest, study_uid: str | None = None, series_uid: str | None = None
) -> HttpResponse:
    search = parse_search(request.GET, "IMAGE")
    if study_uid is not None:
        study = study_for(
            user=request.user,
            study_uid=study_uid,
            audit_action=AuditEvent.Action.LIST,
            detail={"dicomweb": "search instances", "series": series_uid or ""},
        )
        instances = Instance.objects.filter(series__study=study)
        if series_uid is not None:
            instances = instances.filter(series__series_instance_uid=series_uid)
            default_tags = INSTANCE_TAGS
        else:
            default_tags = INSTANCE_TAGS + SERIES_TAGS
    else:
        visible = studies_visible_to(request.user).values("pk")
        instances = Instance.objects.filter(series__study__in=visible)
        default_tags = INSTANCE_TAGS + SERIES_TAGS + STUDY_TAGS
    needs_metadata = search.include_all or bool(search.include - set(default_tags))
    instances = instances.select_related("series__study__organization")
    if not needs_metadata:
        instances = instances.defer("metadata")
    found = match_instances(instances, search.filters)
    page, has_more = _page(
        found.order_by(
            "series__study_id", "series__series_number", "series_id", "instance_number", "id"
        ),
        search,
    )
    base = base_url(request)
    results = []
    for instance in page:
        series, study = instance.series, instance.series.study
        values = attributes.instance_attributes(
            instance, study.study_instance_uid, series.series_instance_uid, base
        )
        if study_uid is None or series_uid is None:
            values = {
                **attributes.series_attributes(series, study.study_instance_uid, base),
                **values,
            }
        if study_uid is None:
            values = {**attributes.study_attributes(study, base), **values}
        if needs_metadata:
            stored = attributes.without_bulk_data(instance.metadata)
            if search.include_all:
                values = {**stored, **values}
            else:
                _with_extra(values, stored, search)
        results.append(_selected(values, search, default_tags))
    if study_uid is None:
        _audit(request.user, [instance.series.study for instance in page], "search instances")
    return _answer(request, results, search, has_more=has_more)
