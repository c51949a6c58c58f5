"""Who may read and change a patient's record (DESIGN.md, "Roles and access").

- the patient: their own record, read only; they add entries to their own health diary;
- a clinician: patients of their organization, read and change;
- a coordinator: patients of the clinics of their region, read (for triage);
- a specialist: patients of the consults assigned to them while the consult is open
  (the consults app adds that grant to PATIENT_VIEW_GRANTS);
- an administrator: no clinical data.

Every entry of the record (encounters, conditions, observations, documents...) follows its
patient: whoever may read the patient may read the entry, and the same for changes.
"""

from __future__ import annotations

from django.db.models import Q

from accounts.access import (
    CHANGE,
    CREATE,
    DELETE,
    NOTHING,
    VIEW,
    coordinated_regions,
    organization_ids,
    policy,
)
from accounts.models import Membership, User

Role = Membership.Role

RECORD_MODELS = [
    "ehr.Encounter",
    "ehr.Condition",
    "ehr.Medication",
    "ehr.Allergy",
    "ehr.Observation",
    "ehr.ClinicalNote",
    "ehr.Document",
    "ehr.DiaryThreshold",
    "ehr.Alert",
]


# Other apps open a patient's record to more people, each by a function from the user to a
# Q over patients (consults: the specialist of an open consult).
PATIENT_VIEW_GRANTS: list = []


@policy("ehr.Patient", VIEW)
def view_patient(user: User) -> Q:
    allowed = (
        Q(user=user)
        | Q(organization_id__in=organization_ids(user, Role.CLINICIAN))
        | Q(organization__region__in=coordinated_regions(user))
    )
    for grant in PATIENT_VIEW_GRANTS:
        allowed |= grant(user)
    return allowed


@policy("ehr.Patient", CHANGE, CREATE)
def change_patient(user: User) -> Q:
    organizations = organization_ids(user, Role.CLINICIAN)
    return Q(organization_id__in=organizations) if organizations else NOTHING


@policy("ehr.Patient", "view_access_log")
def view_patient_access_log(user: User) -> Q:
    # Who looked at my record: the patient's own question. Staff read the audit log instead.
    return Q(user=user)


@policy("ehr.Patient", "keep_diary")
def keep_diary(user: User) -> Q:
    # The patient writes their own diary; clinicians enter readings in the record instead.
    return Q(user=user)


def _via_patient(patient_policy: type) -> type:
    def entries(user: User) -> Q:
        from ehr.models import Patient

        allowed = patient_policy(user)
        if allowed == NOTHING:
            return NOTHING
        return Q(patient__in=Patient.objects.filter(allowed).values("pk"))

    return entries


for _model in RECORD_MODELS:
    policy(_model, VIEW)(_via_patient(view_patient))
    policy(_model, CHANGE, CREATE, DELETE)(_via_patient(change_patient))


@policy("ehr.LabMessage", VIEW, CHANGE)
def review_lab_messages(user: User) -> Q:
    """A matched lab message follows its patient's clinicians. One that matched nobody goes
    to the regional centres' coordinators, who route referrals and know the clinics; they
    attach it to the right patient."""
    from ehr.models import Patient

    allowed = NOTHING
    organizations = organization_ids(user, Role.CLINICIAN)
    if organizations:
        allowed |= Q(
            patient__in=Patient.objects.filter(organization_id__in=organizations).values("pk")
        )
    if coordinated_regions(user):
        allowed |= Q(patient__isnull=True)
    return allowed
