"""Reads for the FHIR API that `ehr.selectors` has no form for; they audit like its own."""

from __future__ import annotations

from django.http import Http404

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from ehr.models import Patient


def patient_for_export(*, user: User, patient_id: int) -> Patient:
    """The patient whose whole record `user` is about to export ($everything).

    As `ehr.selectors.patient_for`, but the read is one EXPORT event rather than a view:
    the audit log must show that the whole record left. A refusal answers 404, as for a
    patient who does not exist, and is audited too.
    """
    patient = Patient.objects.select_related("organization").filter(pk=patient_id).first()
    if patient is None or not access.can(user, access.VIEW, patient):
        record_event(
            actor=user,
            action=AuditEvent.Action.EXPORT,
            outcome=AuditEvent.Outcome.DENIED,
            target=patient,
            patient_id=patient.pk if patient else None,
            region=patient.organization.region if patient else "",
            detail={"requested_patient_id": patient_id, "format": "fhir"},
        )
        raise Http404("No such patient")
    record_event(
        actor=user,
        action=AuditEvent.Action.EXPORT,
        target=patient,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"format": "fhir", "operation": "$everything"},
    )
    return patient
