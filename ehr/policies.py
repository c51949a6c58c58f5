"""Who may read and change a patient's record (DESIGN.md, "Roles and access").

- the patient: their own record, read only;
- a clinician: patients of their organization, read and change;
- a coordinator: patients of the clinics of their region, read (for triage);
- a specialist: patients of the consults assigned to them while the consult is open
  (granted by the consults app once it lands; nothing before that);
- an administrator: no clinical data.
"""

from __future__ import annotations

from django.db.models import Q

from accounts.access import CHANGE, CREATE, VIEW, coordinated_regions, organization_ids, policy
from accounts.models import Membership, User

Role = Membership.Role


@policy("ehr.Patient", VIEW)
def view_patient(user: User) -> Q:
    return (
        Q(user=user)
        | Q(organization_id__in=organization_ids(user, Role.CLINICIAN))
        | Q(organization__region__in=coordinated_regions(user))
    )


@policy("ehr.Patient", CHANGE, CREATE)
def change_patient(user: User) -> Q:
    return Q(organization_id__in=organization_ids(user, Role.CLINICIAN))


@policy("ehr.Patient", "view_access_log")
def view_patient_access_log(user: User) -> Q:
    # Who looked at my record: the patient's own question. Staff read the audit log instead.
    return Q(user=user)
