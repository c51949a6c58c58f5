"""Authentication, method checks and error answers shared by every DICOMweb endpoint.

Plain Django views rather than DRF: DICOMweb answers are application/dicom+json and
multipart/related, which DRF's content negotiation and error pages would get in the way of.
The API token is checked with DRF's token authentication all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from accounts.api_auth import BearerTokenAuthentication
from accounts.models import User
from imaging.services.query import QueryError

SAFE_METHODS = ("GET", "HEAD")


class DicomwebError(Exception):
    """An answer other than success: its HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(error: DicomwebError) -> HttpResponse:
    response = HttpResponse(
        f"{error.message}\n", status=error.status, content_type="text/plain; charset=utf-8"
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


def _unauthorized(message: str) -> DicomwebError:
    return DicomwebError(401, message, {"WWW-Authenticate": 'Bearer realm="dicomweb"'})


def _csrf_failure(request: HttpRequest) -> bool:
    # A browser session may write too (our own viewer), but only with the CSRF token: a
    # bearer token is never sent by a browser on its own, a session cookie is.
    check = CsrfViewMiddleware(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def authenticated_user(request: HttpRequest) -> User:
    """The user of the bearer token, or of the browser session."""
    if request.META.get("HTTP_AUTHORIZATION"):
        try:
            result = BearerTokenAuthentication().authenticate(request)
        except AuthenticationFailed as error:
            raise _unauthorized(_("Authentication failed: %s") % error.detail) from None
        if result is None:
            raise _unauthorized(_("Use the header Authorization: Bearer <token>."))
        return result[0]
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if request.method not in SAFE_METHODS and _csrf_failure(request):
            raise DicomwebError(403, _("The CSRF token is missing or wrong."))
        return user
    raise _unauthorized(_("Authentication required: Authorization: Bearer <token>."))


def dicomweb_view(
    *methods: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Method check, authentication, and errors as plain-text answers with their status."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise DicomwebError(
                        405,
                        _("%s is not supported here.") % request.method,
                        {"Allow": ", ".join(methods)},
                    )
                request.user = authenticated_user(request)
                return view(request, *args, **kwargs)
            except DicomwebError as error:
                return error_response(error)
            except QueryError as error:
                return error_response(DicomwebError(400, str(error)))
            except Http404:
                return error_response(DicomwebError(404, _("Not found.")))
            except PermissionDenied as error:
                return error_response(DicomwebError(403, str(error) or _("Not allowed.")))

        return wrapper

    return decorate
