"""Who may see, change and export imaging studies (DESIGN.md, "Roles and access").

- a study of a patient follows the patient: whoever may read the patient's record may read
  their studies (their clinicians, the coordinators of their region, the specialist of an
  open consult, the patient);
- a study that matches no patient yet is seen by the clinicians of the organization that
  received it, who attach it to the right patient (the review queue);
- changing a study (attaching it to a patient) is for the clinicians of the receiving
  organization or of the patient's clinic;
- export with identities is for those who may change the patient's record (the care team);
  everyone else who may read a study exports it anonymized (DICOM PS3.15 Annex E);
- an upload is seen by the person who sent it and the clinicians of its organization.
"""

from __future__ import annotations

from django.db.models import Q

from accounts.access import CHANGE, NOTHING, VIEW, organization_ids, policy
from accounts.models import Membership, User
from ehr.policies import change_patient, view_patient

Role = Membership.Role
EXPORT_IDENTIFIED = "export_identified"


def _patients(patient_policy: type, user: User) -> Q:
    from ehr.models import Patient

    allowed = patient_policy(user)
    if allowed == NOTHING:
        return NOTHING
    return Q(patient__in=Patient.objects.filter(allowed).values("pk"))


def _receiving_clinicians(user: User) -> Q:
    organizations = organization_ids(user, Role.CLINICIAN)
    return Q(organization_id__in=organizations) if organizations else NOTHING


@policy("imaging.Study", VIEW)
def view_study(user: User) -> Q:
    return _patients(view_patient, user) | (Q(patient__isnull=True) & _receiving_clinicians(user))


@policy("imaging.Study", CHANGE)
def change_study(user: User) -> Q:
    return _receiving_clinicians(user) | _patients(change_patient, user)


@policy("imaging.Study", EXPORT_IDENTIFIED)
def export_identified_study(user: User) -> Q:
    return _patients(change_patient, user) | (Q(patient__isnull=True) & _receiving_clinicians(user))


@policy("imaging.UploadBatch", VIEW)
def view_upload(user: User) -> Q:
    return Q(created_by=user) | _receiving_clinicians(user)


@policy("imaging.DicomNode", VIEW)
def view_dicom_nodes(user: User) -> Q:
    return _receiving_clinicians(user)
