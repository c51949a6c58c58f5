"""Shared helpers of the FHIR tests: an API client with a token and a record of every kind."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.test import Client
from rest_framework.authtoken.models import Token

from accounts.models import User
from ehr.models import (
    Allergy,
    ClinicalNote,
    Condition,
    Document,
    Encounter,
    Medication,
    Observation,
    Patient,
)

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
BISHKEK = dt.timezone(dt.timedelta(hours=6))


class FhirClient:
    """Talks to /fhir/ as an API client does: bearer token, application/fhir+json."""

    def __init__(self, user: User | None, token: str | None = None) -> None:
        self.client = Client()
        if user is not None and token is None:
            token = Token.objects.get_or_create(user=user)[0].key
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/fhir/{path}", params, **self.headers)

    def post(self, body: Any, *, raw: bytes | None = None, **headers: Any) -> Any:
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(
            "/fhir/", data, content_type="application/fhir+json", **self.headers, **headers
        )


def build_full_record(patient: Patient, author: User) -> None:
    """One row of every kind the FHIR export covers, including a diary reading."""
    at = dt.datetime(2024, 5, 17, 9, 30, tzinfo=BISHKEK)
    visit = Encounter.objects.create(
        patient=patient,
        recorded_by=author,
        organization=patient.organization,
        kind=Encounter.Kind.OUTPATIENT,
        started_at=at,
        ended_at=at + dt.timedelta(minutes=20),
        reason="Headache",
    )
    Condition.objects.create(
        patient=patient,
        encounter=visit,
        icd10_code="I10",
        description="Essential hypertension",
        onset_date=dt.date(2023, 1, 10),
        note="Since last winter",
    )
    Medication.objects.create(
        patient=patient,
        name="Amlodipine",
        dose="5 mg",
        route="oral",
        frequency="once a day",
        start_date=dt.date(2024, 5, 17),
    )
    Allergy.objects.create(
        patient=patient, substance="Penicillin", reaction="rash", severity="moderate"
    )
    Observation.objects.create(
        patient=patient,
        encounter=visit,
        category=Observation.Category.VITAL_SIGNS,
        source=Observation.Source.CLINICIAN,
        code="85354-9",
        display="Blood pressure",
        unit="mm[Hg]",
        components=[
            {"code": "8480-6", "display": "Systolic", "value": 150, "unit": "mm[Hg]"},
            {"code": "8462-4", "display": "Diastolic", "value": 95, "unit": "mm[Hg]"},
        ],
        interpretation=Observation.Interpretation.HIGH,
        effective_at=at,
    )
    Observation.objects.create(
        patient=patient,
        category=Observation.Category.LABORATORY,
        source=Observation.Source.LAB,
        code="2345-7",
        display="Glucose",
        value=Decimal("6.1"),
        unit="mmol/L",
        reference_low=Decimal("3.9"),
        reference_high=Decimal("5.5"),
        effective_at=at,
    )
    Observation.objects.create(
        patient=patient,
        category=Observation.Category.VITAL_SIGNS,
        source=Observation.Source.PATIENT,
        code="8867-4",
        display="Heart rate",
        value=Decimal("72"),
        unit="/min",
        effective_at=at + dt.timedelta(days=1),
    )
    ClinicalNote.objects.create(
        patient=patient,
        encounter=visit,
        title="Visit",
        text="Давление высокое, назначен амлодипин.",
    )
    document = Document(
        patient=patient,
        title="Discharge letter",
        kind=Document.Kind.DISCHARGE,
        content_type="application/pdf",
        size=len(PDF),
        sha256="0" * 64,
    )
    document.file.save("letter.pdf", ContentFile(PDF), save=False)
    document.save()


def everything_as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """An exported $everything turned into the transaction that recreates it."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": entry["fullUrl"],
                "resource": entry["resource"],
                "request": {"method": "POST", "url": entry["resource"]["resourceType"]},
            }
            for entry in bundle["entry"]
        ],
    }


def content_without_ids(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of a bundle with ids gone and references named by what they point at."""
    names = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        identifier = resource.get("identifier", [{}])[0].get("value", "")
        name = f"{resource['resourceType']}:{identifier}"
        names[entry["fullUrl"]] = name
        names[f"{resource['resourceType']}/{resource['id']}"] = name

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: names.get(item, item) if key == "reference" else strip(item)
                for key, item in value.items()
                if key != "id"
            }
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    resources = [strip(entry["resource"]) for entry in bundle["entry"]]
    return sorted(resources, key=lambda resource: json.dumps(resource, sort_keys=True))
