"""Log-ins, log-outs and failed log-ins go to the audit log (Django's auth signals)."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts.lockout import lockout_username
from accounts.models import AuditEvent, User
from accounts.services.audit import record_event, region_of_account


@receiver(user_logged_in)
def audit_login(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    record_event(actor=user, action=AuditEvent.Action.LOGIN, target=user)


@receiver(user_logged_out)
def audit_logout(sender: Any, request: Any, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        record_event(actor=user, action=AuditEvent.Action.LOGOUT, target=user)


@receiver(user_login_failed)
def audit_login_failed(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
    email = lockout_username(None, credentials) or ""
    record_event(
        actor=None,
        actor_label=email[:300],
        action=AuditEvent.Action.LOGIN_FAILED,
        outcome=AuditEvent.Outcome.FAILED,
        # The account's region, so that its coordinator sees attacks on it.
        region=region_of_account(email),
    )


@receiver(user_locked_out)
def audit_locked_out(sender: Any, request: Any, username: str, **kwargs: Any) -> None:
    record_event(
        actor=None,
        actor_label=str(username or "")[:300],
        action=AuditEvent.Action.LOCKED_OUT,
        outcome=AuditEvent.Outcome.DENIED,
        region=region_of_account(str(username or "")),
    )
