"""Who may do what to organizations, users, memberships and the audit log.

The administrator role is the platform's: it manages every organization and user, and reads
the audit log, but no clinical data. A coordinator sees the people and the audit trail of the
organizations in their region.
"""

from __future__ import annotations

from django.db.models import Q

from accounts.access import (
    CHANGE,
    CREATE,
    DELETE,
    EVERYTHING,
    EXPORT,
    NOTHING,
    VIEW,
    coordinated_regions,
    has_role,
    organization_ids,
    policy,
)
from accounts.models import Membership, User

Role = Membership.Role
STAFF_ROLES = (Role.CLINICIAN, Role.SPECIALIST, Role.COORDINATOR, Role.ADMIN)


@policy("accounts.Organization", VIEW)
def view_organization(user: User) -> Q:
    # Staff see the whole directory (to refer, to consult); patients see their own clinics.
    if has_role(user, *STAFF_ROLES):
        return EVERYTHING
    return Q(pk__in=organization_ids(user, Role.PATIENT))


@policy("accounts.Organization", CHANGE, CREATE, DELETE)
def manage_organization(user: User) -> Q:
    return EVERYTHING if has_role(user, Role.ADMIN) else NOTHING


@policy("accounts.User", VIEW)
def view_user(user: User) -> Q:
    if has_role(user, Role.ADMIN):
        return EVERYTHING
    regions = coordinated_regions(user)
    colleagues = Membership.objects.filter(
        organization__region__in=regions, role__in=STAFF_ROLES, is_active=True
    ).values("user_id")
    return Q(pk=user.pk) | Q(pk__in=colleagues)


@policy("accounts.User", CHANGE)
def change_user(user: User) -> Q:
    return EVERYTHING if has_role(user, Role.ADMIN) else Q(pk=user.pk)


@policy("accounts.User", CREATE, DELETE)
def manage_user(user: User) -> Q:
    return EVERYTHING if has_role(user, Role.ADMIN) else NOTHING


@policy("accounts.Membership", VIEW)
def view_membership(user: User) -> Q:
    if has_role(user, Role.ADMIN):
        return EVERYTHING
    return Q(user=user) | Q(organization__region__in=coordinated_regions(user))


@policy("accounts.Membership", CHANGE, CREATE, DELETE)
def manage_membership(user: User) -> Q:
    return EVERYTHING if has_role(user, Role.ADMIN) else NOTHING


@policy("accounts.AuditEvent", VIEW)
def view_audit_event(user: User) -> Q:
    if has_role(user, Role.ADMIN):
        return EVERYTHING
    from ehr.models import Patient

    allowed = NOTHING  # stays NOTHING for roles with no part of the log (the admin asks)
    regions = coordinated_regions(user)
    if regions:
        allowed |= Q(region__in=regions)
    own_patient_ids = list(Patient.objects.filter(user=user).values_list("pk", flat=True))
    if own_patient_ids:
        allowed |= Q(patient_id__in=own_patient_ids)
    return allowed


@policy("accounts.AuditEvent", EXPORT)
def export_audit_event(user: User) -> Q:
    # Also the test of who reads the audit log page at all: NOTHING means "not you".
    if has_role(user, Role.ADMIN):
        return EVERYTHING
    regions = coordinated_regions(user)
    return Q(region__in=regions) if regions else NOTHING
