"""Reads of imaging data. Each one that returns patient data checks access and writes the
audit event itself, so no caller (page, DICOMweb, DIMSE) can forget to."""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import QuerySet
from django.http import Http404

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import build_audit_event, record_event
from imaging.models import Instance, Series, Study

# A burst of reads of one study by one user (frames for a viewer) is one audit event.
READ_BURST_SECONDS = 600
# ...and within a burst, a granted permission is trusted this long (a consult that closes
# stops the frames of an open viewer within a minute).
BURST_DECISION_SECONDS = 60


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
    studies = Study.objects.select_related("patient", "organization").order_by()
    found = list(
        studies.filter(pk=study_id)[:1]
        if study_id is not None
        else studies.filter(study_instance_uid=study_uid)[:1]
    )
    study = found[0] if found else None
    decision_key = f"imaging:may:{user.pk}:{study.pk if study else 0}:{action}"
    is_trusted = bool(audit_once_per and study and cache.get(decision_key))
    if study is None or not (is_trusted or access.can(user, action, study)):
        record_event(
            actor=user,
            action=audit_action,
            outcome=AuditEvent.Outcome.DENIED,
            target=study,
            patient_id=study.patient_id if study else None,
            region=study.organization.region if study else "",
            detail={"requested_study": study_id or study_uid, "requested_action": action},
        )
        raise Http404("No such study")
    if audit_once_per:
        if not is_trusted:
            cache.set(decision_key, 1, timeout=BURST_DECISION_SECONDS)
        key = f"imaging:read:{user.pk}:{study.pk}:{audit_once_per}"
        if not cache.add(key, 1, timeout=READ_BURST_SECONDS):
            return study
    record_event(
        actor=user,
        action=audit_action,
        target=study,
        patient_id=study.patient_id,
        region=study.organization.region,
        detail=detail or {},
    )
    return study


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
