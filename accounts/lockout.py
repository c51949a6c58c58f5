"""How django-axes names the account a failed log-in was for."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def lockout_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """The e-mail, lower-cased, so that "Name@Clinic.kg" and "name@clinic.kg" count together.

    Django passes the e-mail as `email` (the user model's USERNAME_FIELD) or `username`
    (the log-in form's field name) depending on the path; both are accepted.
    """
    credentials = credentials or {}
    value = credentials.get("username") or credentials.get("email")
    if not value and request is not None:
        value = getattr(request, "POST", {}).get("username")
    return str(value).strip().lower() if value else None
