from __future__ import annotations

import csv
import io

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from accounts.models import AuditEvent, Region, User
from ehr.models import Patient
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db


def test_reading_a_patient_writes_who_what_when_where(clinician: User, patient: Patient):
    client = logged_in_client(clinician)

    client.get(f"/patients/{patient.pk}/", REMOTE_ADDR="10.20.30.40")

    event = AuditEvent.objects.get(action="view", patient_id=patient.pk)
    assert event.actor_user_id == clinician.pk
    assert clinician.email in event.actor_label
    assert event.actor_roles == "clinician"
    assert event.outcome == "allowed"
    assert event.object_type == "ehr.patient"
    assert event.object_id == str(patient.pk)
    assert event.ip_address == "10.20.30.40"
    assert event.channel == "web"
    assert event.region == Region.NARYN


def test_a_refused_read_is_audited_as_denied(other_clinician: User, patient: Patient):
    client = logged_in_client(other_clinician)

    client.get(f"/patients/{patient.pk}/")

    event = AuditEvent.objects.get(patient_id=patient.pk)
    assert event.outcome == "denied"
    assert event.actor_user_id == other_clinician.pk


def test_every_patient_shown_in_a_search_is_audited(
    clinician: User, patient: Patient, other_patient: Patient
):
    client = logged_in_client(clinician)

    response = client.get("/patients/", {"q": "Mamytova"})

    assert "Mamytova" in response.content.decode()
    listed = AuditEvent.objects.filter(action="list")
    assert list(listed.values_list("patient_id", flat=True)) == [patient.pk]


def test_api_reads_are_audited_with_the_api_channel(clinician: User, patient: Patient):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=clinician).key}")

    api.get(f"/api/v1/patients/{patient.pk}/")

    event = AuditEvent.objects.get(action="view", patient_id=patient.pk)
    assert event.channel == "api"


def test_audit_events_cannot_be_changed_or_deleted(db: None):
    event = AuditEvent.objects.create(action="view", outcome="allowed", actor_label="someone")

    event.actor_label = "someone else"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
    # Below the ORM's model methods, the database itself refuses.
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor_label="rewritten")
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "someone"


def test_patient_sees_who_read_their_record_and_how_many_times(
    clinician: User, coordinator: User, patient_user: User, patient: Patient
):
    clinician_client = logged_in_client(clinician)
    for _ in range(3):
        clinician_client.get(f"/patients/{patient.pk}/")
    logged_in_client(coordinator).get(f"/patients/{patient.pk}/")
    patient_client = logged_in_client(patient_user)
    patient_client.get(f"/patients/{patient.pk}/")  # the patient's own reads are not listed

    page = patient_client.get(f"/patients/{patient.pk}/access-log/").content.decode()
    api = patient_client.get(f"/api/v1/patients/{patient.pk}/access-log/").json()

    readers = {row["actor_label"].split(" <")[0]: row["reads"] for row in api}
    assert readers == {clinician.full_name: 3, coordinator.full_name: 1}
    assert clinician.full_name in page
    assert patient_user.full_name not in page.split("<main", 1)[1].split("</main>")[0]


def test_nobody_else_sees_a_patients_access_summary(clinician: User, patient: Patient):
    response = logged_in_client(clinician).get(f"/patients/{patient.pk}/access-log/")

    assert response.status_code == 404


def test_coordinator_filters_the_audit_log_of_their_region_only(
    coordinator: User, clinician: User, patient: Patient, talas_patient: Patient, talas_coordinator
):
    logged_in_client(clinician).get(f"/patients/{patient.pk}/")
    logged_in_client(talas_coordinator).get(f"/patients/{talas_patient.pk}/")
    client = logged_in_client(coordinator)

    response = client.get("/accounts/audit/", {"action": "view", "actor": "clinician"})

    page = response.content.decode()
    assert response.status_code == 200
    assert patient.full_name in page
    assert talas_patient.full_name not in page


def test_audit_filter_rejects_a_malformed_value_clearly(coordinator: User):
    response = logged_in_client(coordinator).get("/accounts/audit/", {"since": "yesterday"})

    assert response.status_code == 400
    assert "Enter a valid date" in response.content.decode()


def test_coordinator_exports_the_filtered_audit_log_as_csv(
    coordinator: User, clinician: User, patient: Patient, other_patient: Patient
):
    reader = logged_in_client(clinician)
    reader.get(f"/patients/{patient.pk}/")
    client = logged_in_client(coordinator)

    response = client.get("/accounts/audit/export.csv", {"patient": patient.pk, "action": "view"})

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["patient_id"] for row in rows] == [str(patient.pk)]
    assert rows[0]["actor_label"].startswith(clinician.full_name)
    assert rows[0]["ip_address"] == "127.0.0.1"
    # The export itself is on the record.
    assert AuditEvent.objects.filter(action="export", actor_user_id=coordinator.pk).exists()


def test_audit_api_filters_by_patient_and_outcome(
    admin_user: User, other_clinician: User, patient: Patient
):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    logged_in_client(other_clinician).get(f"/patients/{patient.pk}/")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=admin_user).key}")

    body = api.get("/api/v1/audit-events/", {"patient": patient.pk, "outcome": "denied"}).json()

    assert body["count"] == 1
    assert body["results"][0]["actor_user_id"] == other_clinician.pk


def test_coordinator_sees_failed_logins_to_accounts_of_their_region(
    coordinator: User, clinician: User, talas_coordinator: User
):
    from django.test import Client

    Client().post("/accounts/login/", {"username": clinician.email, "password": "guess"})

    naryn = logged_in_client(coordinator).get("/accounts/audit/", {"action": "login_failed"})
    talas = logged_in_client(talas_coordinator).get("/accounts/audit/", {"action": "login_failed"})

    assert clinician.email in naryn.content.decode()
    assert clinician.email not in talas.content.decode()
