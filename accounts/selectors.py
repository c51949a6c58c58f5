"""Reads of accounts data, filtered by who is asking."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts import access
from accounts.models import AuditEvent, Organization, User


def organizations_visible_to(user: User) -> QuerySet[Organization]:
    return access.scope(user, access.VIEW, Organization.objects.filter(is_active=True))


def audit_events_visible_to(user: User) -> QuerySet[AuditEvent]:
    return access.scope(user, access.VIEW, AuditEvent.objects.all())


def audit_events_exportable_by(user: User) -> QuerySet[AuditEvent]:
    return access.scope(user, access.EXPORT, AuditEvent.objects.all())


def can_read_audit_log(user: User) -> bool:
    """Coordinators and administrators read the audit log (patients read their own summary)."""
    return access.rows_allowed(user, access.EXPORT, AuditEvent) != access.NOTHING
