"""Charts data and the clinician's diary page: the series, the target ranges, audited reads."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, User
from ehr.models import Patient
from ehr.services.diary import record_diary_entry, set_threshold
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db


def record(patient: Patient, user: User, measure: str, values: dict, hours_ago: int) -> None:
    record_diary_entry(
        patient=patient, user=user, measure=measure, values=values, client_uuid=uuid.uuid4(),
        measured_at=timezone.now() - dt.timedelta(hours=hours_ago),
    )  # fmt: skip


@pytest.fixture
def diary(patient: Patient, patient_user: User, clinician: User) -> Patient:
    set_threshold(patient=patient, user=clinician, measure="blood_pressure",
                  low=Decimal(90), high=Decimal(140), second_low=Decimal(60),
                  second_high=Decimal(90))  # fmt: skip
    record(patient, patient_user, "blood_pressure", {"systolic": 150, "diastolic": 95}, 2)
    record(patient, patient_user, "blood_pressure", {"systolic": 130, "diastolic": 80}, 30)
    record(patient, patient_user, "pulse", {"value": 70}, 1)
    record(patient, patient_user, "symptoms", {"text": "Dizzy"}, 1)
    return patient


def test_charts_data_returns_the_series_oldest_first_and_the_thresholds(
    diary: Patient, clinician: User
):
    response = logged_in_client(clinician).get(f"/diary/patients/{diary.pk}/data/")

    assert response.status_code == 200
    data = response.json()
    pressure = data["series"]["blood_pressure"]
    assert pressure["values"] == [[130.0, 150.0], [80.0, 95.0]]
    assert pressure["times"][0] < pressure["times"][1]
    assert pressure["threshold"] == {
        "low": 90.0, "high": 140.0, "second_low": 60.0, "second_high": 90.0
    }  # fmt: skip
    assert data["series"]["pulse"]["values"] == [[70.0]]
    assert data["series"]["pulse"]["threshold"] is None
    assert data["series"]["glucose"]["times"] == []
    assert [s["text"] for s in data["symptoms"]] == ["Dizzy"]


def test_reading_the_charts_data_is_audited(diary: Patient, clinician: User):
    logged_in_client(clinician).get(f"/diary/patients/{diary.pk}/data/")

    event = AuditEvent.objects.get(
        action=AuditEvent.Action.VIEW, actor_user_id=clinician.pk, patient_id=diary.pk
    )
    assert event.region == diary.organization.region


def test_the_patient_reads_their_own_charts(diary: Patient, patient_user: User):
    response = logged_in_client(patient_user).get(f"/diary/patients/{diary.pk}/data/")

    assert response.status_code == 200
    assert len(response.json()["series"]["blood_pressure"]["times"]) == 2


def test_others_get_404_and_the_refusal_is_audited(
    diary: Patient, other_clinician: User, talas_coordinator: User
):
    for user in (other_clinician, talas_coordinator):
        response = logged_in_client(user).get(f"/diary/patients/{diary.pk}/data/")
        page = logged_in_client(user).get(f"/diary/patients/{diary.pk}/")

        assert (response.status_code, page.status_code) == (404, 404)
        assert AuditEvent.objects.filter(
            actor_user_id=user.pk, outcome=AuditEvent.Outcome.DENIED, patient_id=diary.pk
        ).exists()


def test_clinicians_diary_page_shows_charts_entries_and_threshold_forms(
    diary: Patient, clinician: User
):
    response = logged_in_client(clinician).get(f"/diary/patients/{diary.pk}/")

    content = response.content.decode()
    assert response.status_code == 200
    assert diary.full_name in content
    assert 'id="diary-charts"' in content
    assert "vendor/uplot/uPlot.iife.min.js" in content
    assert 'name="blood_pressure-second_high"' in content
    assert 'value="140"' in content
    assert "Dizzy" in content
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.VIEW, actor_user_id=clinician.pk, patient_id=diary.pk
    ).exists()


def test_a_coordinator_reads_the_diary_but_sets_no_ranges(diary: Patient, coordinator: User):
    response = logged_in_client(coordinator).get(f"/diary/patients/{diary.pk}/")

    assert response.status_code == 200
    assert b"diary-threshold" not in response.content
