"""Who may see and move a referral.

- the referring clinic's clinicians: create, edit drafts, submit, cancel, close;
- the coordinators of the referring clinic's region: triage (or decline);
- the specialist it is assigned to: read it, write and sign the report; while it is open
  (triaged to report signed) they also read the patient's record;
- the patient: reads their own referrals.
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
from ehr.policies import PATIENT_VIEW_GRANTS

Role = Membership.Role
TRIAGE = "triage"
REPORT = "report"


def _referring(user: User) -> Q:
    organizations = organization_ids(user, Role.CLINICIAN)
    return Q(referring_organization_id__in=organizations) if organizations else NOTHING


@policy("consults.Referral", VIEW)
def view_referral(user: User) -> Q:
    allowed = _referring(user) | Q(specialist=user) | Q(patient__user=user)
    regions = coordinated_regions(user)
    if regions:
        allowed |= Q(region__in=regions) & ~Q(status="draft")
    return allowed


@policy("consults.Referral", CHANGE, CREATE)
def change_referral(user: User) -> Q:
    return _referring(user)


@policy("consults.Referral", TRIAGE)
def triage_referral(user: User) -> Q:
    regions = coordinated_regions(user)
    return Q(region__in=regions) if regions else NOTHING


@policy("consults.Referral", REPORT)
def report_on_referral(user: User) -> Q:
    return Q(specialist=user)


def specialist_of_open_consult(user: User) -> Q:
    from consults.models import OPEN_STATUSES, Referral

    if not user.roles & {Role.SPECIALIST}:
        return NOTHING
    patients = Referral.objects.filter(specialist=user, status__in=OPEN_STATUSES)
    return Q(pk__in=patients.values("patient_id"))


PATIENT_VIEW_GRANTS.append(specialist_of_open_consult)


BOOK = "book"


@policy("consults.Referral", BOOK)
def book_for_referral(user: User) -> Q:
    """Sessions are booked by the coordinators of the region or the referring clinicians."""
    regions = coordinated_regions(user)
    allowed = _referring(user)
    if regions:
        allowed |= Q(region__in=regions)
    return allowed


@policy("consults.Appointment", VIEW)
def view_appointment(user: User) -> Q:
    from consults.models import Participant, Referral

    visible = Referral.objects.filter(view_referral(user)).values("pk")
    invited = Participant.objects.filter(user=user, is_active=True).values("appointment_id")
    return Q(pk__in=invited) | Q(referral__in=visible)


@policy("consults.Appointment", CHANGE)
def change_appointment(user: User) -> Q:
    from consults.models import Referral

    return Q(referral__in=Referral.objects.filter(book_for_referral(user)).values("pk"))


@policy("consults.AvailabilityRule", VIEW)
@policy("consults.AvailabilityException", VIEW)
def view_availability(user: User) -> Q:
    staff = user.roles - {Role.PATIENT}
    return Q() if staff else NOTHING


@policy("consults.AvailabilityRule", CHANGE, CREATE, DELETE)
@policy("consults.AvailabilityException", CHANGE, CREATE, DELETE)
def own_availability(user: User) -> Q:
    # specialist_id, not specialist: can_create() checks an unsaved row by its column values.
    return Q(specialist_id=user.pk) if Role.SPECIALIST in user.roles else NOTHING
