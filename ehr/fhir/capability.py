"""The CapabilityStatement at /fhir/metadata: what this server does."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ehr.fhir.mapping import validated

RECORD_TYPES = [
    "Encounter",
    "Condition",
    "Observation",
    "MedicationStatement",
    "AllergyIntolerance",
    "DocumentReference",
]


def capability_statement(*, base_url: str) -> dict[str, Any]:
    record_resources = [
        {
            "type": resource_type,
            "documentation": "Read through Patient/$everything; written through a "
            "transaction Bundle posted to the base URL (identifier = idempotency key).",
        }
        for resource_type in RECORD_TYPES
    ]
    return validated(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": timezone.now().isoformat(),
            "publisher": "Telemed",
            "kind": "instance",
            "software": {"name": "Telemed"},
            "implementation": {"description": "Telemed FHIR API", "url": base_url},
            "fhirVersion": "4.0.1",
            "format": ["json", "application/fhir+json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "cors": False,
                        "description": "An API token as 'Authorization: Bearer <token>' "
                        "(manage.py api_token EMAIL). Access follows the user's roles; every "
                        "read is audited.",
                    },
                    "resource": [
                        {
                            "type": "Patient",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": [
                                {
                                    "name": "identifier",
                                    "type": "token",
                                    "documentation": "urn:telemed:pin|<PIN>",
                                },
                                {
                                    "name": "name",
                                    "type": "string",
                                    "documentation": "Any part of the name, Cyrillic or Latin.",
                                },
                                {"name": "birthdate", "type": "date"},
                            ],
                            "operation": [
                                {
                                    "name": "everything",
                                    "definition": "http://hl7.org/fhir/OperationDefinition/"
                                    "Patient-everything",
                                }
                            ],
                        },
                        *record_resources,
                    ],
                    "interaction": [{"code": "transaction"}],
                }
            ],
        }
    )
