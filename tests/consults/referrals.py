"""Referrals made for tests through the real workflow services."""

from __future__ import annotations

from accounts.models import Specialty, User
from consults.models import Referral
from consults.services import referrals as workflow
from ehr.models import Patient


def triaged_referral(
    *, clinician: User, coordinator: User, specialist: User, patient: Patient,
    specialty: Specialty, mode: str = "live",
) -> Referral:  # fmt: skip
    referral = workflow.create_referral(
        clinician=clinician, patient=patient, specialty=specialty, urgency="routine",
        question="Chest pain on exertion. ECG?",
    )  # fmt: skip
    workflow.submit_referral(referral=referral, clinician=clinician)
    return workflow.triage_referral(
        referral=referral, coordinator=coordinator, specialist=specialist, priority=2, mode=mode
    )
