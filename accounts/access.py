"""The one place that answers "may this user do this to this object".

Each (model, action) pair has one policy: a function from the user to a `Q` over that model,
naming the rows the user may act on. The same policy filters lists (`scope`) and answers for
one object (`can`), so a page, an API endpoint and a WebSocket consumer can never disagree.
Apps declare the policies of their own models in their `policies.py` with `@policy(...)`;
each app's `ready()` loads its module. Superusers get no shortcut: being a Django admin
does not open clinical data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.db.models import Q, Value

if TYPE_CHECKING:
    from accounts.models import User

PolicyFunction = Callable[["User"], Q]

VIEW = "view"
CHANGE = "change"
CREATE = "create"
DELETE = "delete"
EXPORT = "export"

NOTHING = Q(pk__in=[])
EVERYTHING = Q()

_policies: dict[tuple[str, str], PolicyFunction] = {}


def policy(model_label: str, *actions: str) -> Callable[[PolicyFunction], PolicyFunction]:
    """Register `function` as the policy for `actions` on the model `app_label.ModelName`."""

    def register(function: PolicyFunction) -> PolicyFunction:
        for action in actions:
            key = (model_label.lower(), action)
            if key in _policies:
                raise ImproperlyConfigured(f"Two policies for {action} on {model_label}")
            _policies[key] = function
        return function

    return register


def _policy_for(model: type[models.Model], action: str) -> PolicyFunction:
    key = (model._meta.label_lower, action)
    try:
        return _policies[key]
    except KeyError:
        # No policy means nobody may: forgetting one closes the door, never opens it.
        return lambda user: NOTHING


def rows_allowed(user: User | Any, action: str, model: type[models.Model]) -> Q:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return NOTHING
    return _policy_for(model, action)(user)


def scope(user: User | Any, action: str, queryset: models.QuerySet) -> models.QuerySet:
    """The rows of `queryset` on which `user` may perform `action`."""
    return queryset.filter(rows_allowed(user, action, queryset.model))


def can(user: User | Any, action: str, obj: models.Model) -> bool:
    model = type(obj)
    return scope(user, action, model._default_manager.filter(pk=obj.pk)).exists()


def can_create(user: User | Any, obj: models.Model) -> bool:
    """May `user` create `obj` (not saved yet)? The CREATE policy, checked against its values."""
    allowed = rows_allowed(user, CREATE, type(obj))
    if allowed == NOTHING:
        return False
    values: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        value = Value(getattr(obj, field.attname))
        values[field.attname] = value
        values[field.name] = value
    return allowed.check(values)


def ensure_can(user: User | Any, action: str, obj: models.Model) -> None:
    if not can(user, action, obj):
        raise PermissionDenied


# --- Facts about a user that policies are built from ------------------------------------------


def organization_ids(user: User, *roles: str) -> list[int]:
    """Organizations where the user holds one of `roles` (an active membership)."""
    from accounts.models import Membership

    return list(
        Membership.objects.filter(
            user=user, role__in=roles, is_active=True, organization__is_active=True
        ).values_list("organization_id", flat=True)
    )


def coordinated_regions(user: User) -> list[str]:
    """The regions a coordinator works for: those of their regional centres."""
    from accounts.models import Membership, Organization

    return list(
        Membership.objects.filter(
            user=user,
            role=Membership.Role.COORDINATOR,
            is_active=True,
            organization__kind=Organization.Kind.REGIONAL_CENTRE,
            organization__is_active=True,
        )
        .values_list("organization__region", flat=True)
        .distinct()
    )


def has_role(user: User, *roles: str) -> bool:
    return bool(user.roles & set(roles))
