"""Which EHR patient a received study belongs to.

A study is attached to a patient only on certain evidence: the patient the uploader chose, or
a DICOM Patient ID equal to a patient's PIN (unique nationally). A name and a birth date are
not enough for a machine to decide; such studies wait in the review queue, where the
candidates are proposed to a clinician who attaches the study (`attach_study`).
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from ehr.models import Patient
from ehr.transliteration import skeleton
from imaging.models import Study


def _dicom_name_words(name: str) -> list[str]:
    # PN: family^given^middle^prefix^suffix, possibly with =ideographic=phonetic groups.
    alphabetic = name.split("=")[0]
    return [w for w in skeleton(alphabetic.replace("^", " ")).split() if len(w) > 1]


def candidate_patients(study: Study) -> QuerySet[Patient]:
    """Patients this study may belong to: by PIN, else by birth date and a name word."""
    patient_id = study.dicom_patient_id.strip()
    if patient_id:
        by_pin = Patient.objects.filter(pin=patient_id)
        if by_pin.exists():
            return by_pin
    try:
        born = dt.datetime.strptime(study.dicom_birth_date, "%Y%m%d").date()  # noqa: DTZ007
    except ValueError:
        return Patient.objects.none()
    words = _dicom_name_words(study.dicom_patient_name)
    if not words:
        return Patient.objects.none()
    return Patient.objects.filter(birth_date=born, search_key__contains=words[0])


def match_study_patient(*, study: Study, chosen_patient: Patient | None = None) -> Study:
    """Attach a new study to its patient when the evidence is certain; otherwise leave it for
    review, marked as matching nobody or several patients."""
    if chosen_patient is not None:
        study.patient, study.match = chosen_patient, Study.Match.MATCHED
    else:
        patient_id = study.dicom_patient_id.strip()
        by_pin = list(Patient.objects.filter(pin=patient_id)[:2]) if patient_id else []
        if len(by_pin) == 1:
            study.patient, study.match = by_pin[0], Study.Match.MATCHED
        else:
            candidates = candidate_patients(study).count()
            study.match = Study.Match.AMBIGUOUS if candidates > 1 else Study.Match.UNMATCHED
    study.save(update_fields=["patient", "match"])
    return study


@transaction.atomic
def attach_study(*, study: Study, patient: Patient, user: User) -> Study:
    """A clinician attaches a study from the review queue (or corrects a match)."""
    access.ensure_can(user, access.CHANGE, study)
    if not access.can(user, access.CHANGE, patient):
        raise PermissionDenied
    if study.patient_id == patient.pk:
        raise ValidationError(_("The study is already attached to this patient."))
    previous = study.patient_id
    study.patient, study.match = patient, Study.Match.MATCHED
    study.save(update_fields=["patient", "match"])
    record_event(
        actor=user,
        action=AuditEvent.Action.UPDATE,
        target=study,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"attached_to_patient": patient.pk, "previous_patient": previous},
    )
    return study
