"""The patient records readings in their diary: each becomes one Observation of the record."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import AuditEvent, User
from ehr.models import Observation, Patient
from ehr.services.diary import record_diary_entry
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db

# (measure, values sent, code, unit, category)
READINGS = [
    ("pulse", {"value": "72"}, "8867-4", "/min", "vital-signs"),
    ("glucose", {"value": "6,4"}, "15074-8", "mmol/L", "vital-signs"),
    ("weight", {"value": "71.5"}, "29463-7", "kg", "vital-signs"),
    ("temperature", {"value": "36.6"}, "8310-5", "Cel", "vital-signs"),
    ("spo2", {"value": "97"}, "59408-5", "%", "vital-signs"),
]


def post_entry(client: Any, **entry: Any) -> Any:
    body = {"uuid": str(uuid.uuid4()), "measured_at": timezone.now().isoformat(), **entry}
    return client.post("/diary/entries/", json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(("measure", "values", "code", "unit", "category"), READINGS)
def test_patient_records_each_measure_as_an_observation(
    patient: Patient, patient_user: User, measure: str, values: dict, code: str, unit: str,
    category: str,
):  # fmt: skip
    client = logged_in_client(patient_user)

    response = post_entry(client, measure=measure, values=values)

    assert response.status_code == 201, response.content
    observation = Observation.objects.get(patient=patient)
    assert (observation.code, observation.unit, observation.category) == (code, unit, category)
    assert observation.source == Observation.Source.PATIENT
    assert observation.source_system == "diary"
    assert observation.source_id == response.json()["uuid"]
    assert observation.value == Decimal(values["value"].replace(",", "."))
    assert observation.recorded_by == patient_user


def test_blood_pressure_is_one_observation_with_two_components(
    patient: Patient, patient_user: User
):
    client = logged_in_client(patient_user)

    response = post_entry(
        client, measure="blood_pressure", values={"systolic": "135", "diastolic": "85"}
    )

    assert response.status_code == 201
    observation = Observation.objects.get(patient=patient)
    assert observation.code == "85354-9"
    assert observation.value is None
    assert observation.components == [
        {"code": "8480-6", "display": "Systolic blood pressure", "value": 135, "unit": "mm[Hg]"},
        {"code": "8462-4", "display": "Diastolic blood pressure", "value": 85, "unit": "mm[Hg]"},
    ]
    assert observation.value_display.startswith("135/85 ")


def test_symptoms_are_a_survey_observation_with_text(patient: Patient, patient_user: User):
    client = logged_in_client(patient_user)

    post_entry(client, measure="symptoms", values={"text": "Headache since the morning"})

    observation = Observation.objects.get(patient=patient)
    assert (observation.category, observation.code) == ("survey", "75325-1")
    assert observation.value_text == "Headache since the morning"


def test_the_same_client_uuid_sent_twice_creates_one_entry(patient: Patient, patient_user: User):
    client = logged_in_client(patient_user)
    entry_uuid = str(uuid.uuid4())

    first = post_entry(client, uuid=entry_uuid, measure="pulse", values={"value": "72"})
    second = post_entry(client, uuid=entry_uuid, measure="pulse", values={"value": "72"})

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["created"] is False
    assert Observation.objects.filter(patient=patient).count() == 1


def test_writing_the_entry_is_audited(patient: Patient, patient_user: User):
    client = logged_in_client(patient_user)

    post_entry(client, measure="pulse", values={"value": "72"})

    event = AuditEvent.objects.get(action=AuditEvent.Action.CREATE, patient_id=patient.pk)
    assert event.object_type == "ehr.observation"
    assert event.region == patient.organization.region


@pytest.mark.parametrize(
    ("measure", "values", "expected"),
    [
        ("blood_pressure", {"systolic": "400", "diastolic": "80"}, "between 50 and 300"),
        ("blood_pressure", {"systolic": "80", "diastolic": "120"}, "must be less than"),
        ("spo2", {"value": "101"}, "between 50 and 100"),
        ("temperature", {"value": "366"}, "between 30 and 45"),
        ("pulse", {"value": "seventy"}, "must be a number"),
        ("pulse", {"value": ""}, "Enter"),
        ("symptoms", {"text": "  "}, "Describe how you feel"),
        ("mood", {"value": "5"}, "Unknown measure"),
    ],
)
def test_implausible_values_are_refused_with_a_clear_message(
    patient: Patient, patient_user: User, measure: str, values: dict, expected: str
):
    client = logged_in_client(patient_user)

    response = post_entry(client, measure=measure, values=values)

    assert response.status_code == 400
    assert response.json()["status"] == "refused"
    assert expected in response.json()["message"]
    assert not Observation.objects.filter(patient=patient).exists()


def test_a_reading_dated_far_in_the_future_is_refused(patient: Patient, patient_user: User):
    client = logged_in_client(patient_user)

    response = post_entry(
        client, measure="pulse", values={"value": "70"}, measured_at="2999-01-01T10:00:00+06:00"
    )

    assert response.status_code == 400
    assert "future" in response.json()["message"]


def test_a_clinician_cannot_write_into_a_patients_diary(
    patient: Patient, clinician: User, patient_user: User
):
    client = logged_in_client(clinician)

    response = post_entry(client, measure="pulse", values={"value": "72"})

    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        record_diary_entry(
            patient=patient, user=clinician, measure="pulse", values={"value": "72"},
            client_uuid=uuid.uuid4(), measured_at=None,
        )  # fmt: skip
    assert not Observation.objects.exists()


def test_another_patient_cannot_write_into_someones_diary(
    patient: Patient, other_patient: Patient, clinic: Any
):
    from tests.factories.accounts import member

    intruder = member(clinic, "patient", email="intruder@example.kg")
    other_patient.user = intruder
    other_patient.save()

    with pytest.raises(PermissionDenied):
        record_diary_entry(
            patient=patient, user=intruder, measure="pulse", values={"value": "72"},
            client_uuid=uuid.uuid4(), measured_at=None,
        )  # fmt: skip
    # Over HTTP the intruder can only ever write into their own diary.
    response = post_entry(logged_in_client(intruder), measure="pulse", values={"value": "72"})
    assert Observation.objects.get().patient == other_patient
    assert response.status_code == 201


def test_an_anonymous_sender_is_told_to_log_in(patient: Patient):
    from django.test import Client

    response = post_entry(Client(), measure="pulse", values={"value": "72"})

    assert response.status_code == 401
    assert not Observation.objects.exists()


def test_a_malformed_uuid_is_refused(patient: Patient, patient_user: User):
    with pytest.raises(ValidationError, match="identifier"):
        record_diary_entry(
            patient=patient, user=patient_user, measure="pulse", values={"value": "72"},
            client_uuid="not-a-uuid", measured_at=None,
        )  # fmt: skip


def test_the_patient_opens_the_diary_page_and_others_get_404(
    patient: Patient, patient_user: User, clinician: User
):
    page = logged_in_client(patient_user).get("/diary/")
    refused = logged_in_client(clinician).get("/diary/")

    assert page.status_code == 200
    assert b'inputmode="numeric"' in page.content
    assert b"diary-config" in page.content
    assert refused.status_code == 404


def test_the_service_worker_is_served_under_the_diary(patient_user: User, patient: Patient):
    response = logged_in_client(patient_user).get("/diary/sw.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert b"__PRECACHE__" not in response.content
    assert b"/static/ehr/diary.js" in response.content
