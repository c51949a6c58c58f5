from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import User
from ehr.models import Patient

pytestmark = pytest.mark.django_db


def api_token(email: str) -> str:
    out = io.StringIO()
    call_command("api_token", email, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_api_token_command_prints_a_bearer_token_that_the_api_accepts(clinician: User):
    token = api_token(clinician.email)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    me = api.get("/api/v1/me/").json()

    assert me["email"] == clinician.email
    assert me["roles"] == ["clinician"]
    assert api_token(clinician.email) == token  # the same token until rotated


def test_api_token_for_an_unknown_user_is_a_clear_error(db: None):
    with pytest.raises(CommandError, match="No active user"):
        call_command("api_token", "nobody@example.kg")


def test_api_refuses_missing_and_wrong_tokens(clinician: User):
    api = APIClient()

    assert api.get("/api/v1/me/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert api.get("/api/v1/me/").status_code == 401


def test_patient_search_over_the_api_is_scoped(
    clinician: User, patient: Patient, other_patient: Patient
):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(clinician.email)}")

    body = api.get("/api/v1/patients/").json()

    assert [row["id"] for row in body["results"]] == [patient.pk]


def test_openapi_schema_describes_the_api(db: None):
    response = APIClient().get("/api/schema/", {"format": "json"})

    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/me/", "/api/v1/patients/", "/api/v1/audit-events/"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }


def test_openapi_schema_generates_without_warnings(db: None):
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def test_api_docs_page_works_offline(db: None):
    page = APIClient().get("/api/docs/").content.decode()

    assert "swagger-ui" in page
    # Every script, stylesheet and image comes from the site itself, none from a CDN.
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    assert any("swagger-ui" in url for url in assets)
    assert [url for url in assets if not url.startswith("/") or url.startswith("//")] == []
