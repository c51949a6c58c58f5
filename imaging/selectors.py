"""Reads of imaging data. Each one that returns patient data checks access and writes the
audit event itself, so no caller (page, DICOMweb, DIMSE) can forget to."""

from __future__ import annotations

import datetime as dt
import re
import time

from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.http import Http404

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import build_audit_event, record_event, record_patient_reads
from ehr.models import Patient
from imaging.models import Instance, Series, Study
from imaging.services.matching import candidate_patients
from imaging.services.query import match_studies
from telemed.compiled import CompiledQuery

# A burst of reads of one study by one user (frames for a viewer) is one audit event.
READ_BURST_SECONDS = 600
# ...and within a burst, a granted permission is trusted this long (a consult that closes
# stops the frames of an open viewer within a minute).
BURST_DECISION_SECONDS = 60
# What this process learnt of those two facts from the cache: key -> the time (time.time())
# until which the cache holds it. A viewer's frames then cost no cache round trip after the
# first; a fact is never kept past the moment the cache itself lets it go.
_known_until: dict[str, float] = {}
_KNOWN_MAX = 10_000


def studies_visible_to(user: User) -> QuerySet[Study]:
    """The studies `user` may read (no data returned, so nothing audited here)."""
    return access.scope(user, access.VIEW, Study.objects.select_related("patient", "organization"))


def record_study_reads(
    *,
    user: User | None,
    studies: list[Study],
    action: str = AuditEvent.Action.LIST,
    channel_detail: dict | None = None,
    actor_label: str = "",
) -> None:
    """One audit event per study shown or sent, written in one query."""
    AuditEvent.objects.bulk_create(
        build_audit_event(
            actor=user,
            actor_label=actor_label,
            action=action,
            outcome=AuditEvent.Outcome.ALLOWED,
            target=study,
            patient_id=study.patient_id,
            region=study.organization.region,
            detail=channel_detail or {},
        )
        for study in studies
    )


# The viewer records a series opened once per user, browser session and series in this time.
OPENED_SERIES_SECONDS = 8 * 3600


def record_series_opened(*, user: User, session_key: str, series: Series) -> None:
    """One audit event per series a user opens in a session, however many frames follow;
    cache.add is atomic, so the viewer's parallel prefetches cannot record it twice."""
    key = f"imaging:opened:{user.pk}:{session_key}:{series.pk}"
    if cache.add(key, 1, timeout=OPENED_SERIES_SECONDS):
        record_study_reads(
            user=user,
            studies=[series.study],
            action=AuditEvent.Action.VIEW,
            channel_detail={"series": series.series_instance_uid, "channel": "viewer"},
        )


def search_studies(
    studies: QuerySet[Study],
    *,
    patient: str = "",
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    modality: str = "",
    accession: str = "",
) -> QuerySet[Study]:
    """`studies` narrowed by the study list's search: a patient (EHR name or PIN, or the
    DICOM name or ID), a date range, a modality, an accession number. Raises QueryError."""
    if patient.strip():
        studies = studies.filter(_patient_condition(patient.strip()))
    filters: dict[str, str] = {}
    if date_from or date_to:
        start = date_from.strftime("%Y%m%d") if date_from else ""
        end = date_to.strftime("%Y%m%d") if date_to else ""
        filters["StudyDate"] = f"{start}-{end}"
    if modality:
        filters["ModalitiesInStudy"] = modality
    if accession.strip():
        filters["AccessionNumber"] = accession.strip()
    return match_studies(studies, filters) if filters else studies


def _patient_condition(text: str) -> Q:
    """Studies of EHR patients found by name or PIN, or whose DICOM name or ID matches."""
    from ehr.selectors import patient_search_condition

    condition = Q(patient__in=Patient.objects.filter(patient_search_condition(text)).values("pk"))
    condition |= Q(dicom_patient_id__iexact=text)
    words = [word for word in re.split(r"[\s,^]+", text) if word]
    if words:
        name = Q()
        for word in words:
            name &= Q(dicom_patient_name__icontains=word)
        condition |= name
    return condition


def _studies() -> QuerySet[Study]:
    return Study.objects.select_related("patient", "organization").order_by()


def study_for(
    *,
    user: User,
    study_id: int | None = None,
    study_uid: str | None = None,
    action: str = access.VIEW,
    audit_action: str = AuditEvent.Action.VIEW,
    detail: dict | None = None,
    audit_once_per: str = "",
) -> Study:
    """The study if `user` may perform `action` on it; otherwise 404 (the same answer as for a
    study that does not exist). Both outcomes are audited.

    `audit_once_per` names a kind of read that comes in bursts (a viewer fetching hundreds of
    frames): an allowed read of that kind is recorded once per user and study every
    READ_BURST_SECONDS, not once per request, and the permission, once granted, is trusted for
    BURST_DECISION_SECONDS (the policy queries cost more than serving a cached frame).
    Refusals are always checked afresh and recorded."""
    found = list(
        _studies().filter(pk=study_id)[:1]
        if study_id is not None
        else _studies().filter(study_instance_uid=study_uid)[:1]
    )
    return _allowed(
        user=user,
        study=found[0] if found else None,
        requested=study_id or study_uid,
        action=action,
        audit_action=audit_action,
        detail=detail,
        audit_once_per=audit_once_per,
    )


# Frames are asked for hundreds at a time: this look-up is compiled to SQL once.
_instance_by_uids = CompiledQuery(
    Instance,
    lambda study_uid, series_uid, sop_uid: (
        Instance.objects.filter(
            series__study__study_instance_uid=study_uid,
            series__series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
        # Not the patient: neither the check nor the audit event needs more than its id.
        .select_related("received_file", "series__study__organization")
        .defer("metadata")
        .order_by()[:1]  # at most one (unique UID)
    ),
    arity=3,
)


def instance_for(
    *,
    user: User,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    audit_action: str = AuditEvent.Action.VIEW,
    detail: dict | None = None,
    audit_once_per: str = "",
) -> Instance:
    """The instance (with its received file, series and study) if `user` may view its study:
    the same answers and audit events as study_for followed by a look-up of the instance in
    that study, in one query when the instance exists. Its metadata is not loaded."""
    found = _instance_by_uids(study_uid, series_uid, sop_uid)
    if not found:
        # The study decides the answer and what is audited (a refusal, or a read of a study
        # that holds no such instance).
        study_for(
            user=user,
            study_uid=study_uid,
            audit_action=audit_action,
            detail=detail,
            audit_once_per=audit_once_per,
        )
        raise Http404("No such instance")
    instance = found[0]
    _allowed(
        user=user,
        study=instance.series.study,
        requested=study_uid,
        action=access.VIEW,
        audit_action=audit_action,
        detail=detail,
        audit_once_per=audit_once_per,
    )
    return instance


def _allowed(
    *,
    user: User,
    study: Study | None,
    requested: int | str | None,
    action: str,
    audit_action: str,
    detail: dict | None,
    audit_once_per: str,
) -> Study:
    """`study` if `user` may perform `action` on it, audited as study_for describes."""
    now = time.time()
    decision_key = f"imaging:may:{user.pk}:{study.pk if study else 0}:{action}"
    read_key = f"imaging:read:{user.pk}:{study.pk if study else 0}:{audit_once_per}"
    is_trusted = is_audited = False
    found: dict = {}
    if audit_once_per and study:
        # Both facts (permission trusted, burst audited) in one round trip, or none.
        unknown = [key for key in (decision_key, read_key) if _known_until.get(key, 0) <= now]
        found = cache.get_many(unknown) if unknown else {}
        for key, until in found.items():
            _remember(key, until, now)
        is_trusted = _holds(found.get(decision_key), now) or _known_until.get(decision_key, 0) > now
        is_audited = _holds(found.get(read_key), now) or _known_until.get(read_key, 0) > now
    if study is None or not (is_trusted or access.can(user, action, study)):
        record_event(
            actor=user,
            action=audit_action,
            outcome=AuditEvent.Outcome.DENIED,
            target=study,
            patient_id=study.patient_id if study else None,
            region=study.organization.region if study else "",
            detail={"requested_study": requested, "requested_action": action},
        )
        raise Http404("No such study")
    if audit_once_per:
        if not is_trusted:
            until = now + BURST_DECISION_SECONDS
            cache.set(decision_key, until, timeout=BURST_DECISION_SECONDS)
            _remember(decision_key, until, now)
        if is_audited:
            return study
        until = now + READ_BURST_SECONDS
        if read_key in found:  # kept by the cache past its time (the clock moved): replace it
            cache.set(read_key, until, timeout=READ_BURST_SECONDS)
        elif not cache.add(read_key, until, timeout=READ_BURST_SECONDS):
            return study  # another request (or process) records this burst
        _remember(read_key, until, now)
    record_event(
        actor=user,
        action=audit_action,
        target=study,
        patient_id=study.patient_id,
        region=study.organization.region,
        detail=detail or {},
    )
    return study


def _holds(value: object, now: float) -> bool:
    """Whether a fact read from the cache still holds: its value is the time it ends (1 in
    entries written before times were stored)."""
    return value > now if isinstance(value, float) else bool(value)


def _remember(key: str, until: object, now: float) -> None:
    """Note that the cache holds `key` until `until` (its value: the moment it expires)."""
    if not isinstance(until, float) or until <= now:
        return  # not a time (a value from before times were stored), or already over
    if len(_known_until) >= _KNOWN_MAX:
        for old, when in list(_known_until.items()):  # a copy: other threads write too
            if when <= now:
                _known_until.pop(old, None)
        if len(_known_until) >= _KNOWN_MAX:
            _known_until.clear()
    _known_until[key] = until


def studies_waiting_for_review(user: User) -> QuerySet[Study]:
    """Studies that matched no patient, or several, that `user` may attach: the clinicians of
    the receiving organization (no data returned, so nothing audited here)."""
    studies = access.scope(
        user,
        access.CHANGE,
        Study.objects.filter(
            patient__isnull=True, match__in=[Study.Match.UNMATCHED, Study.Match.AMBIGUOUS]
        ).select_related("organization"),
    )
    return studies.order_by("-created_at", "-id")


def review_candidates(*, user: User, study: Study) -> list[Patient]:
    """The patients `user` may see whom `study` may belong to; each one proposed is audited."""
    visible = access.scope(user, access.VIEW, Patient.objects.all()).values("pk")
    candidates = list(
        candidate_patients(study).filter(pk__in=visible).select_related("organization")
    )
    record_patient_reads(actor=user, patients=candidates)
    return candidates


def series_of(study: Study) -> QuerySet[Series]:
    return study.series.all()


def instances_of(study: Study) -> QuerySet[Instance]:
    return Instance.objects.filter(series__study=study).select_related("series", "received_file")


def study_view_count(study: Study) -> list[dict]:
    """Who viewed this study and how many times (from the audit log)."""
    from django.db.models import Count, Max

    return list(
        AuditEvent.objects.filter(
            object_type="imaging.study",
            object_id=str(study.pk),
            outcome=AuditEvent.Outcome.ALLOWED,
            action__in=[AuditEvent.Action.VIEW, AuditEvent.Action.EXPORT],
        )
        .values("actor_label", "actor_roles")
        .annotate(times=Count("id"), last=Max("at"))
        .order_by("-last")
    )
