"""The referral workflow: every move is one of these functions, with its rules, and each
leaves a ReferralEvent and an audit event.

draft → submitted → triaged → (scheduled → in session →) report signed → closed;
declined or cancelled, with a reason, where that makes sense (see ALLOWED_MOVES).
A triaged referral in "written opinion" mode is answered with a report, without a session.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import AuditEvent, Membership, Specialty, User
from accounts.services.audit import record_event
from consults.models import ConsultReport, Referral, ReferralEvent
from consults.policies import REPORT, TRIAGE
from ehr.models import Document, Patient

Status = Referral.Status

ALLOWED_MOVES: dict[str, set[str]] = {
    Status.DRAFT: {Status.SUBMITTED, Status.CANCELLED},
    Status.SUBMITTED: {Status.TRIAGED, Status.DECLINED, Status.CANCELLED},
    Status.TRIAGED: {Status.SCHEDULED, Status.REPORT_SIGNED, Status.DECLINED, Status.CANCELLED},
    # Signing straight from "scheduled": the session took place (by video once the call is
    # built, or by telephone), or the specialist could answer without it.
    Status.SCHEDULED: {Status.IN_SESSION, Status.REPORT_SIGNED, Status.TRIAGED, Status.CANCELLED},
    Status.IN_SESSION: {Status.REPORT_SIGNED},
    Status.REPORT_SIGNED: {Status.CLOSED},
    Status.CLOSED: set(),
    Status.DECLINED: set(),
    Status.CANCELLED: set(),
}


def move_referral(*, referral: Referral, to: str, actor: User, note: str = "") -> None:
    """Change the status if ALLOWED_MOVES permits it, with a history line and an audit event.
    The caller checks who may do it and saves the referral (with its other changed fields)."""
    if to not in ALLOWED_MOVES[referral.status]:
        raise ValidationError(
            _("A referral that is %(now)s cannot become %(next)s.")
            % {"now": referral.get_status_display(), "next": Status(to).label}
        )
    ReferralEvent.objects.create(
        referral=referral, actor=actor, from_status=referral.status, to_status=to, note=note
    )
    referral.status = to
    record_event(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=referral,
        patient_id=referral.patient_id,
        region=referral.region,
        detail={"status": to},
    )


def _ensure(user: User, action: str, referral: Referral) -> None:
    if not access.can(user, action, referral):
        raise PermissionDenied


@transaction.atomic
def create_referral(
    *,
    clinician: User,
    patient: Patient,
    specialty: Specialty,
    urgency: str,
    question: str,
    documents: list[Document] | None = None,
) -> Referral:
    """A draft referral of a patient of the clinician's organization."""
    access.ensure_can(clinician, access.CHANGE, patient)
    referral = Referral(
        patient=patient,
        referring_organization=patient.organization,
        referring_clinician=clinician,
        region=patient.organization.region,
        specialty=specialty,
        urgency=urgency,
        question=question,
    )
    if not access.can_create(clinician, referral):
        raise PermissionDenied
    referral.full_clean()
    referral.save()
    _attach(referral, documents or [])
    ReferralEvent.objects.create(referral=referral, actor=clinician, to_status=Status.DRAFT)
    record_event(
        actor=clinician,
        action=AuditEvent.Action.CREATE,
        target=referral,
        patient_id=patient.pk,
        region=referral.region,
    )
    return referral


def _attach(referral: Referral, documents: list[Document]) -> None:
    if any(document.patient_id != referral.patient_id for document in documents):
        raise ValidationError(_("Only documents of this patient can be attached."))
    referral.documents.set(documents)


@transaction.atomic
def update_draft(*, referral: Referral, clinician: User, **fields: Any) -> Referral:
    _ensure(clinician, access.CHANGE, referral)
    if referral.status != Status.DRAFT:
        raise ValidationError(_("Only a draft can be edited."))
    documents = fields.pop("documents", None)
    for name, value in fields.items():
        setattr(referral, name, value)
    referral.full_clean()
    referral.save()
    if documents is not None:
        _attach(referral, list(documents))
    return referral


@transaction.atomic
def submit_referral(*, referral: Referral, clinician: User) -> Referral:
    """Send the draft to the regional centre; the EHR extract is fixed at this moment."""
    _ensure(clinician, access.CHANGE, referral)
    move_referral(referral=referral, to=Status.SUBMITTED, actor=clinician)
    referral.submitted_at = referral.extract_as_of = timezone.now()
    referral.save(update_fields=["status", "submitted_at", "extract_as_of"])
    return referral


def specialists_for(specialty: Specialty) -> list[User]:
    """Active specialists holding `specialty`, for the coordinator to choose from."""
    return list(
        User.objects.filter(
            is_active=True,
            memberships__role=Membership.Role.SPECIALIST,
            memberships__is_active=True,
            memberships__specialties=specialty,
        ).distinct()
    )


@transaction.atomic
def triage_referral(
    *,
    referral: Referral,
    coordinator: User,
    specialist: User,
    priority: int,
    mode: str,
    specialty: Specialty | None = None,
) -> Referral:
    """The regional centre routes the referral: specialty, specialist, priority, mode."""
    _ensure(coordinator, TRIAGE, referral)
    specialty = specialty or referral.specialty
    if specialist not in specialists_for(specialty):
        raise ValidationError(
            _("%(name)s is not a specialist in %(specialty)s.")
            % {"name": specialist, "specialty": specialty}
        )
    if mode not in Referral.Mode.values:
        raise ValidationError(_("Choose a live session or a written opinion."))
    move_referral(referral=referral, to=Status.TRIAGED, actor=coordinator, note=f"{specialist}")
    referral.specialty, referral.specialist = specialty, specialist
    referral.priority, referral.mode = priority, mode
    referral.triaged_at = timezone.now()
    referral.save()
    return referral


@transaction.atomic
def decline_referral(*, referral: Referral, coordinator: User, reason: str) -> Referral:
    _ensure(coordinator, TRIAGE, referral)
    if not reason.strip():
        raise ValidationError(_("Say why the referral is declined."))
    move_referral(referral=referral, to=Status.DECLINED, actor=coordinator, note=reason)
    referral.closed_at = timezone.now()
    referral.save(update_fields=["status", "closed_at"])
    return referral


@transaction.atomic
def cancel_referral(*, referral: Referral, clinician: User, reason: str) -> Referral:
    _ensure(clinician, access.CHANGE, referral)
    if not reason.strip():
        raise ValidationError(_("Say why the referral is cancelled."))
    move_referral(referral=referral, to=Status.CANCELLED, actor=clinician, note=reason)
    referral.closed_at = timezone.now()
    referral.save(update_fields=["status", "closed_at"])
    return referral


@transaction.atomic
def save_report(*, referral: Referral, specialist: User, **fields: Any) -> ConsultReport:
    """Write (or rewrite) the report before it is signed."""
    _ensure(specialist, REPORT, referral)
    if referral.status not in (Status.TRIAGED, Status.SCHEDULED, Status.IN_SESSION):
        raise ValidationError(_("A report is written while the consult is open."))
    report = ConsultReport.objects.filter(referral=referral).first() or ConsultReport(
        referral=referral, author=specialist
    )
    if report.signed_at:
        raise ValidationError(_("A signed report cannot be changed."))
    for name, value in fields.items():
        setattr(report, name, value)
    report.full_clean(exclude=["document"])
    report.save()
    return report


@transaction.atomic
def sign_report(*, referral: Referral, specialist: User) -> ConsultReport:
    """Sign the report: it becomes a PDF document in the patient's record and the referring
    clinician is told (e-mail through Celery; the referral shows on their dashboard)."""
    from consults.report_pdf import render_report_pdf
    from consults.tasks import notify_report_signed

    _ensure(specialist, REPORT, referral)
    report = ConsultReport.objects.filter(referral=referral).first()
    if report is None:
        raise ValidationError(_("Write the report before signing it."))
    move_referral(referral=referral, to=Status.REPORT_SIGNED, actor=specialist)
    referral.save(update_fields=["status"])
    report.signed_at = timezone.now()
    document = Document(
        patient=referral.patient,
        recorded_by=specialist,
        title=_("Consult report: %(specialty)s") % {"specialty": referral.specialty},
        kind=Document.Kind.REPORT,
        content_type="application/pdf",
        source_system="consults",
        source_id=str(referral.pk),
    )
    pdf = render_report_pdf(referral=referral, report=report)
    document.size, document.sha256 = len(pdf), hashlib.sha256(pdf).hexdigest()
    document.file.save(f"consult-report-{referral.pk}.pdf", ContentFile(pdf), save=False)
    document.save()
    report.document = document
    report.save(update_fields=["signed_at", "document"])
    # Sessions that have begun are over once the report is signed.
    referral.appointments.filter(status="booked", starts_at__lte=timezone.now()).update(
        status="completed"
    )
    transaction.on_commit(lambda: notify_report_signed.delay(referral.pk))
    return report


@transaction.atomic
def close_referral(*, referral: Referral, clinician: User) -> Referral:
    """The referring clinic has read the report: the consult ends, and with it the
    specialist's access to the record."""
    _ensure(clinician, access.CHANGE, referral)
    move_referral(referral=referral, to=Status.CLOSED, actor=clinician)
    referral.closed_at = timezone.now()
    referral.save(update_fields=["status", "closed_at"])
    return referral
