"""The FHIR R4 REST endpoints under /fhir/: thin edges over the selectors and the import.

Plain Django views rather than DRF: every answer, errors included, must be FHIR JSON
(an OperationOutcome), which DRF's own error pages and content negotiation would get in the
way of. The API token is checked here with DRF's token authentication all the same.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError as PydanticValidationError
from rest_framework.exceptions import AuthenticationFailed

from accounts.api_auth import BearerTokenAuthentication
from accounts.models import User
from accounts.services.audit import record_patient_reads
from ehr import selectors
from ehr.fhir import mapping
from ehr.fhir.capability import capability_statement
from ehr.fhir.codes import PIN_SYSTEM
from ehr.fhir.resources import IMPORTABLE
from ehr.fhir.responses import FhirError, error_response, fhir_response
from ehr.fhir.selectors import patient_for_export
from ehr.services.fhir_import import import_transaction
from ehr.transliteration import skeleton

SAFE_METHODS = ("GET", "HEAD")
MAX_PAGE_SIZE = 200


def _authenticated_user(request: HttpRequest) -> User:
    """The token's user; a session is enough for reads (a browser looking at the API)."""
    if request.META.get("HTTP_AUTHORIZATION"):
        try:
            result = BearerTokenAuthentication().authenticate(request)
        except AuthenticationFailed as error:
            raise FhirError(401, "login", f"Authentication failed: {error.detail}") from None
        if result is None:
            raise FhirError(401, "login", "Use the header Authorization: Bearer <token>.")
        return result[0]
    if request.method in SAFE_METHODS and request.user.is_authenticated:
        return request.user
    raise FhirError(401, "login", "Authentication required: Authorization: Bearer <token>.")


def fhir_view(
    *methods: str, authenticate: bool = True
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Method check, authentication and errors as OperationOutcomes, for every endpoint.

    CSRF does not apply: writes are accepted only with a bearer token, which a browser never
    sends by itself, so a forged cross-site request cannot carry one.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise FhirError(
                        405, "not-supported", f"{request.method} is not supported here."
                    )
                if authenticate:
                    request.user = _authenticated_user(request)
                return view(request, *args, **kwargs)
            except FhirError as error:
                return error_response(error)
            except Http404:
                return error_response(FhirError(404, "not-found", "Resource not found."))
            except PermissionDenied:
                return error_response(FhirError(403, "forbidden", "Not allowed."))

        return wrapper

    return decorate


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("fhir:base")).rstrip("/")


def _patient_id(value: str) -> int:
    if not value.isdigit():
        raise Http404
    return int(value)


@fhir_view("GET", authenticate=False)
def metadata(request: HttpRequest) -> HttpResponse:
    # Public, as FHIR clients expect: it says what the server does, nothing about anyone.
    return fhir_response(capability_statement(base_url=_base_url(request)))


@fhir_view("GET")
def patient_read(request: HttpRequest, patient_id: str) -> HttpResponse:
    patient = selectors.patient_for(user=request.user, patient_id=_patient_id(patient_id))
    return fhir_response(mapping.validated(mapping.patient_resource(patient)))


def _birthdate_condition(value: str) -> Q:
    prefixes = {"eq": "", "ge": "__gte", "le": "__lte", "gt": "__gt", "lt": "__lt"}
    prefix, date_text = (value[:2], value[2:]) if value[:2] in prefixes else ("eq", value)
    try:
        born = dt.date.fromisoformat(date_text)
    except ValueError:
        raise FhirError(400, "invalid", f"birthdate must be YYYY-MM-DD, not {value!r}.") from None
    return Q(**{f"birth_date{prefixes[prefix]}": born})


def _identifier_condition(value: str) -> Q:
    system, bar, code = value.rpartition("|")
    if bar and system and system != PIN_SYSTEM:
        return Q(pk__in=[])  # we hold no other identifiers of patients
    return Q(pin=code)


def _name_condition(value: str) -> Q:
    # Every word in any script, reduced to the transliteration skeleton the registry keeps.
    condition = Q()
    for word in value.split():
        condition &= Q(search_key__contains=skeleton(word))
    return condition


SEARCH_PARAMETERS = {
    "identifier": _identifier_condition,
    "name": _name_condition,
    "birthdate": _birthdate_condition,
}


def _count(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("_count", 50)), MAX_PAGE_SIZE))
    except ValueError:
        raise FhirError(400, "invalid", "_count must be a number.") from None


@fhir_view("GET")
def patient_search(request: HttpRequest) -> HttpResponse:
    patients = selectors.patients_visible_to(request.user)
    used: list[tuple[str, str]] = []
    for name, values in request.GET.lists():
        # FHIR: a server ignores parameters it does not know, and leaves them out of `self`.
        if name in SEARCH_PARAMETERS:
            for value in values:
                patients = patients.filter(SEARCH_PARAMETERS[name](value))
                used.append((name, value))
    page = Paginator(patients.order_by("family_name", "given_name", "pk"), _count(request))
    number = request.GET.get("_page", "1")
    result = page.get_page(number)
    record_patient_reads(actor=request.user, patients=result.object_list)
    links = mapping.Links(base_url=_base_url(request))
    query = "&".join(f"{name}={value}" for name, value in used)
    bundle = mapping.bundle(
        bundle_type="searchset",
        resources=[mapping.patient_resource(patient) for patient in result.object_list],
        links=links,
        total=page.count,
        self_url=f"{links.base_url}/Patient?{query}" if query else f"{links.base_url}/Patient",
    )
    return fhir_response(bundle)


@fhir_view("GET")
def patient_everything(request: HttpRequest, patient_id: str) -> HttpResponse:
    patient = patient_for_export(user=request.user, patient_id=_patient_id(patient_id))
    links = mapping.Links(base_url=_base_url(request))
    bundle = mapping.bundle(
        bundle_type="searchset",
        resources=mapping.everything_resources(patient, links),
        links=links,
        self_url=f"{links.base_url}/Patient/{patient.pk}/$everything",
    )
    bundle["total"] = len(bundle.get("entry", []))
    return fhir_response(bundle)


def _validated_bundle(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FhirError(400, "structure", f"The body is not valid JSON: {error}") from None
    if not isinstance(raw, dict) or raw.get("resourceType") != "Bundle":
        raise FhirError(400, "invalid", "Post a Bundle of type 'transaction' to the base URL.")
    for index, entry in enumerate(raw.get("entry") or []):
        resource_type = (
            (entry.get("resource") or {}).get("resourceType") if isinstance(entry, dict) else None
        )
        if resource_type not in IMPORTABLE:
            raise FhirError(
                400,
                "not-supported",
                f"entry[{index}]: resource type {resource_type!r} is not supported here "
                f"(supported: {', '.join(IMPORTABLE)}).",
            )
    try:
        return Bundle.model_validate(raw).model_dump(mode="json")
    except PydanticValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()[:10]
        ]
        raise FhirError(400, "invalid", "Invalid resource: " + "; ".join(problems)) from None
    except (ValueError, KeyError, TypeError) as error:
        raise FhirError(400, "invalid", f"Invalid resource: {error}") from None


def _requested_organization(request: HttpRequest) -> int | None:
    header = request.headers.get("X-Telemed-Organization", "").strip()
    if not header:
        return None
    if not header.isdigit():
        raise FhirError(400, "invalid", "X-Telemed-Organization must be an organization id.")
    return int(header)


@fhir_view("POST")
def transaction(request: HttpRequest) -> HttpResponse:
    bundle = _validated_bundle(request.body)
    imported = import_transaction(
        bundle=bundle, user=request.user, organization_id=_requested_organization(request)
    )
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": entry.status,
                    "location": f"{entry.resource_type}/{entry.resource_id}",
                }
            }
            for entry in imported
        ]
        or None,
    }
    response = {key: value for key, value in response.items() if value is not None}
    return fhir_response(Bundle.model_validate(response).model_dump(mode="json"))


@fhir_view("GET", "POST", "PUT", "DELETE", "PATCH")
def unsupported(request: HttpRequest, path: str = "") -> HttpResponse:
    resource_type = path.split("/")[0]
    return error_response(
        FhirError(404, "not-supported", f"{resource_type or 'This path'} is not supported here.")
    )
