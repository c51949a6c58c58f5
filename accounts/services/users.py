"""Changes to users and their memberships."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import Membership, Organization, Specialty, User

PROFILE_FIELDS = {"full_name", "phone", "language", "time_zone"}


def update_profile(*, user: User, **changes: Any) -> User:
    """A user's own settings: name, phone, interface language, time zone."""
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise TypeError(f"Not profile fields: {sorted(unknown)}")
    for field, value in changes.items():
        setattr(user, field, value)
    user.full_clean(exclude=["password"])
    user.save(update_fields=sorted(changes))
    return user


@transaction.atomic
def grant_membership(
    *,
    user: User,
    organization: Organization,
    role: Membership.Role | str,
    specialties: list[Specialty] | None = None,
) -> Membership:
    """Give `user` a role in `organization` (idempotent: an existing membership is reused)."""
    membership, _ = Membership.objects.get_or_create(
        user=user, organization=organization, role=role, defaults={"is_active": True}
    )
    if not membership.is_active:
        membership.is_active = True
        membership.save(update_fields=["is_active"])
    if specialties is not None:
        membership.specialties.set(specialties)
    return membership
