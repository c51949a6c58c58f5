"""FHIR answers: resources as application/fhir+json, and every error as an OperationOutcome."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse

FHIR_JSON = "application/fhir+json; charset=utf-8"


class FhirError(Exception):
    """A request FHIR answers with an OperationOutcome: `status` and an issue `code`.

    Codes are FHIR's IssueType (invalid, structure, not-found, forbidden, login, conflict,
    not-supported, business-rule, processing).
    """

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics


def fhir_response(
    resource: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(
        json.dumps(resource, cls=DjangoJSONEncoder, ensure_ascii=False),
        content_type=FHIR_JSON,
        status=status,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def error_response(error: FhirError) -> HttpResponse:
    headers = {}
    if error.status == 401:
        # RFC 6750: tell the client which scheme to use.
        headers["WWW-Authenticate"] = 'Bearer realm="fhir"'
    return fhir_response(
        operation_outcome(error.code, error.diagnostics), status=error.status, headers=headers
    )
