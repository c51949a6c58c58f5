from __future__ import annotations

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from tests.conftest import logged_in_client
from tests.factories.accounts import PASSWORD

pytestmark = pytest.mark.django_db


def current_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, digits=device.digits):06d}"


def enrol(client: Client, user: User) -> TOTPDevice:
    client.post("/accounts/two-factor/", {"step": "start"})
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(
        "/accounts/two-factor/", {"step": "confirm", "token": current_code(device)}
    )
    assert response.status_code == 302
    device.refresh_from_db()
    return device


def test_staff_user_enrols_with_qr_code_and_then_needs_a_code_to_log_in(clinician: User):
    client = logged_in_client(clinician)
    client.post("/accounts/two-factor/", {"step": "start"})
    page = client.get("/accounts/two-factor/").content.decode()
    assert "<svg" in page

    device = enrol(client, clinician)
    assert device.confirmed
    client.post("/accounts/logout/")

    fresh = Client()
    first_step = fresh.post("/accounts/login/", {"username": clinician.email, "password": PASSWORD})
    assert first_step["Location"] == "/accounts/login/code/"
    assert fresh.get("/").status_code == 302  # not logged in on the password alone
    device.refresh_from_db()
    device.last_t = -1  # the enrolment code may be the current one; allow it again
    device.save()
    second_step = fresh.post("/accounts/login/code/", {"token": current_code(device)})

    assert second_step.status_code == 302
    assert fresh.get("/").status_code == 200


def test_wrong_code_is_refused_and_counts_towards_lockout(clinician: User, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = logged_in_client(clinician)
    enrol(client, clinician)
    fresh = Client()
    fresh.post("/accounts/login/", {"username": clinician.email, "password": PASSWORD})

    wrong = fresh.post("/accounts/login/code/", {"token": "000000"})
    assert wrong.status_code == 200
    assert "not right" in wrong.content.decode()
    fresh.post("/accounts/login/code/", {"token": "000001"})
    locked = fresh.post("/accounts/login/code/", {"token": "000002"})

    assert locked.status_code == 429
    assert fresh.get("/").status_code == 302


def test_wrong_enrolment_code_leaves_two_factor_off(clinician: User):
    client = logged_in_client(clinician)
    client.post("/accounts/two-factor/", {"step": "start"})

    response = client.post("/accounts/two-factor/", {"step": "confirm", "token": "123456"})

    assert response.status_code == 200
    assert "not right" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=clinician, confirmed=True).exists()


def test_where_required_staff_must_enrol_before_reaching_patient_data(clinician: User, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_STAFF = True
    client = logged_in_client(clinician)

    blocked = client.get("/patients/")
    assert blocked.status_code == 302
    assert blocked["Location"].startswith("/accounts/two-factor/")
    enrol(client, clinician)

    assert client.get("/patients/").status_code == 200


def test_patients_are_not_forced_to_use_two_factor(patient_user: User, patient, settings):
    settings.TWO_FACTOR_REQUIRED_FOR_STAFF = True
    client = logged_in_client(patient_user)

    assert client.get("/").status_code == 200


def test_user_turns_two_factor_off_with_their_password(clinician: User):
    client = logged_in_client(clinician)
    enrol(client, clinician)

    wrong = client.post("/accounts/two-factor/", {"step": "disable", "password": "nope"})
    assert TOTPDevice.objects.filter(user=clinician).exists()
    assert wrong.status_code == 200
    client.post("/accounts/two-factor/", {"step": "disable", "password": PASSWORD})

    assert not TOTPDevice.objects.filter(user=clinician).exists()


def test_admin_site_login_goes_through_the_two_factor_login(admin_user: User):
    response = Client().get("/admin/login/?next=/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
