"""Thresholds and alerts: a reading outside the range raises one alert to the clinic's
clinicians, by e-mail and on the dashboard card, until one of them acknowledges it."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.loader import render_to_string
from django.test import RequestFactory

from accounts.models import AuditEvent, User
from ehr.diary.selectors import open_alerts_for
from ehr.models import Alert, DiaryThreshold, Observation, Patient
from ehr.services.diary import acknowledge_alert, record_diary_entry, set_threshold
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def blood_pressure_range(patient: Patient, clinician: User) -> DiaryThreshold:
    return set_threshold(
        patient=patient, user=clinician, measure="blood_pressure",
        low=Decimal(90), high=Decimal(140), second_low=Decimal(60), second_high=Decimal(90),
    )  # fmt: skip


def record_bp(
    patient: Patient, user: User, systolic: int, diastolic: int, entry_uuid: Any = None
) -> tuple[Observation, bool]:
    return record_diary_entry(
        patient=patient,
        user=user,
        measure="blood_pressure",
        values={"systolic": systolic, "diastolic": diastolic},
        client_uuid=entry_uuid or uuid.uuid4(),
        measured_at=None,
    )


def test_an_entry_outside_the_range_raises_exactly_one_alert_even_when_resent(
    patient: Patient, patient_user: User, blood_pressure_range: DiaryThreshold,
    django_capture_on_commit_callbacks: Any, mailoutbox: list,
):  # fmt: skip
    entry_uuid = uuid.uuid4()

    with django_capture_on_commit_callbacks(execute=True):
        observation, created = record_bp(patient, patient_user, 182, 95, entry_uuid)
    with django_capture_on_commit_callbacks(execute=True):
        again, created_again = record_bp(patient, patient_user, 182, 95, entry_uuid)

    assert (created, created_again) == (True, False)
    assert again == observation
    alert = Alert.objects.get()
    assert alert.observation == observation
    assert alert.measure == "blood_pressure"
    assert "SYS > 140" in alert.message
    assert "DIA > 90" in alert.message
    assert observation.interpretation == Observation.Interpretation.HIGH
    assert len(mailoutbox) == 1


def test_an_entry_inside_the_range_raises_none(
    patient: Patient, patient_user: User, blood_pressure_range: DiaryThreshold
):
    observation, _ = record_bp(patient, patient_user, 128, 82)

    assert not Alert.objects.exists()
    assert observation.interpretation == Observation.Interpretation.NORMAL


def test_without_a_range_no_alert_is_raised(patient: Patient, patient_user: User):
    record_bp(patient, patient_user, 220, 120)

    assert not Alert.objects.exists()


def test_a_low_reading_raises_an_alert_too(patient: Patient, patient_user: User, clinician: User):
    set_threshold(patient=patient, user=clinician, measure="spo2", low=Decimal(94), high=None)

    record_diary_entry(
        patient=patient, user=patient_user, measure="spo2", values={"value": "89"},
        client_uuid=uuid.uuid4(), measured_at=None,
    )  # fmt: skip

    assert Alert.objects.get().message.endswith("(< 94)")


def test_the_clinics_clinicians_get_the_alert_by_email(
    patient: Patient, patient_user: User, clinician: User, other_clinician: User,
    blood_pressure_range: DiaryThreshold, django_capture_on_commit_callbacks: Any,
    mailoutbox: list,
):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        record_bp(patient, patient_user, 182, 95)

    assert [message.to for message in mailoutbox] == [[clinician.email]]
    message = mailoutbox[0]
    assert "blood pressure" in message.subject
    assert f"/diary/patients/{patient.pk}/" in message.body
    # E-mail is no confidential channel: the patient is not named in it.
    assert patient.family_name not in message.body + message.subject


def test_clinician_sees_the_alert_on_the_card_acknowledges_it_and_it_disappears(
    patient: Patient, patient_user: User, clinician: User, blood_pressure_range: DiaryThreshold
):
    record_bp(patient, patient_user, 182, 95)
    alert = Alert.objects.get()
    client = logged_in_client(clinician)

    card = render_card(clinician)
    response = client.post(f"/diary/alerts/{alert.pk}/ack/", {"next": "/"})

    assert patient.full_name in card
    assert f"/diary/alerts/{alert.pk}/ack/" in card
    assert "Acknowledge" in card
    assert response.status_code == 302
    assert response["Location"] == "/"
    alert.refresh_from_db()
    assert alert.acknowledged_by == clinician
    assert open_alerts_for(clinician) == []
    assert patient.full_name not in render_card(clinician)
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.UPDATE, object_type="ehr.alert", actor_user_id=clinician.pk
    ).exists()


def render_card(user: User) -> str:
    request = RequestFactory().get("/")
    request.user = user
    return render_to_string(
        "ehr/diary_alerts_card.html", {"alerts": open_alerts_for(user)}, request=request
    )


def test_listing_open_alerts_is_audited_per_patient(
    patient: Patient, patient_user: User, clinician: User, blood_pressure_range: DiaryThreshold
):
    record_bp(patient, patient_user, 182, 95)

    open_alerts_for(clinician)

    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.LIST, patient_id=patient.pk, actor_user_id=clinician.pk
    ).exists()


def test_clinicians_of_another_organization_neither_see_nor_acknowledge_it(
    patient: Patient, patient_user: User, other_clinician: User,
    blood_pressure_range: DiaryThreshold,
):  # fmt: skip
    record_bp(patient, patient_user, 182, 95)
    alert = Alert.objects.get()

    response = logged_in_client(other_clinician).post(f"/diary/alerts/{alert.pk}/ack/")

    assert open_alerts_for(other_clinician) == []
    assert patient.full_name not in render_card(other_clinician)
    assert response.status_code == 404
    with pytest.raises(PermissionDenied):
        acknowledge_alert(alert=alert, user=other_clinician)
    alert.refresh_from_db()
    assert alert.is_open


def test_the_patient_does_not_see_the_card_nor_acknowledge(
    patient: Patient, patient_user: User, blood_pressure_range: DiaryThreshold
):
    record_bp(patient, patient_user, 182, 95)

    assert open_alerts_for(patient_user) == []
    assert render_card(patient_user).strip() == ""
    with pytest.raises(PermissionDenied):
        acknowledge_alert(alert=Alert.objects.get(), user=patient_user)


def test_clinician_sets_a_range_on_the_diary_page(patient: Patient, clinician: User):
    client = logged_in_client(clinician)

    response = client.post(
        f"/diary/patients/{patient.pk}/thresholds/",
        {"measure": "glucose", "glucose-low": "3,9", "glucose-high": "10"},
    )

    assert response.status_code == 302
    threshold = DiaryThreshold.objects.get(patient=patient, measure="glucose")
    assert (threshold.low, threshold.high, threshold.set_by) == (Decimal("3.9"), 10, clinician)


def test_an_inverted_or_implausible_range_is_refused(patient: Patient, clinician: User):
    client = logged_in_client(clinician)

    response = client.post(
        f"/diary/patients/{patient.pk}/thresholds/",
        {"measure": "pulse", "pulse-low": "120", "pulse-high": "60"},
    )

    assert response.status_code == 400
    assert b"The highest value is below the lowest." in response.content
    with pytest.raises(ValidationError):
        set_threshold(patient=patient, user=clinician, measure="spo2", low=None, high=Decimal(150))
    assert not DiaryThreshold.objects.exists()


def test_emptying_a_range_removes_it(
    patient: Patient, clinician: User, blood_pressure_range: DiaryThreshold
):
    result = set_threshold(patient=patient, user=clinician, measure="blood_pressure",
                           low=None, high=None)  # fmt: skip

    assert result is None
    assert not DiaryThreshold.objects.exists()


def test_only_the_patients_clinicians_set_ranges(
    patient: Patient, patient_user: User, other_clinician: User
):
    response = logged_in_client(other_clinician).post(
        f"/diary/patients/{patient.pk}/thresholds/",
        {"measure": "pulse", "pulse-low": "50", "pulse-high": "100"},
    )

    assert response.status_code == 404
    with pytest.raises(PermissionDenied):
        set_threshold(patient=patient, user=patient_user, measure="pulse", low=None, high=None)
    assert not DiaryThreshold.objects.exists()
