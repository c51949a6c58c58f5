from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import AuditEvent, User
from tests.factories.accounts import PASSWORD

pytestmark = pytest.mark.django_db


def test_user_logs_in_by_email_in_any_letter_case(clinician: User):
    client = Client()

    response = client.post(
        "/accounts/login/", {"username": "Clinician@Example.KG", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_gets_a_clear_error_and_no_session(clinician: User):
    client = Client()

    response = client.post("/accounts/login/", {"username": clinician.email, "password": "nope"})

    assert response.status_code == 200
    assert "not right" in response.content.decode()
    assert client.get("/").status_code == 302


def test_pages_need_a_login(db: None):
    response = Client().get("/patients/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_logout_and_failures_are_audited(clinician: User):
    client = Client()
    client.post("/accounts/login/", {"username": clinician.email, "password": "wrong"})
    client.post("/accounts/login/", {"username": clinician.email, "password": PASSWORD})
    client.post("/accounts/logout/")

    actions = list(AuditEvent.objects.order_by("id").values_list("action", "outcome"))

    assert actions == [("login_failed", "failed"), ("login", "allowed"), ("logout", "allowed")]
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.actor_label == clinician.email
    assert failed.ip_address == "127.0.0.1"


def test_account_locks_after_repeated_failures_even_with_the_right_password(
    clinician: User, settings
):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(3):
        client.post("/accounts/login/", {"username": clinician.email, "password": "wrong"})

    response = client.post("/accounts/login/", {"username": clinician.email, "password": PASSWORD})

    assert response.status_code in (403, 429)
    assert "Too many failed attempts" in response.content.decode()
    assert AuditEvent.objects.filter(action="locked_out").exists()
    # Another colleague at the same address is not locked out.


def test_lockout_is_per_account_not_per_clinic_address(
    clinician: User, other_clinician: User, settings
):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(3):
        client.post("/accounts/login/", {"username": clinician.email, "password": "wrong"})

    response = Client().post(
        "/accounts/login/", {"username": other_clinician.email, "password": PASSWORD}
    )

    assert response.status_code == 302


def test_disabled_account_cannot_log_in(clinician: User):
    clinician.is_active = False
    clinician.save()

    response = Client().post(
        "/accounts/login/", {"username": clinician.email, "password": PASSWORD}
    )

    assert response.status_code == 200
    assert Client().get("/").status_code == 302


def test_user_changes_password(clinician: User):
    client = Client()
    client.post("/accounts/login/", {"username": clinician.email, "password": PASSWORD})
    new_password = "Naryn-river-2026-spring"

    response = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password},
    )

    assert response.status_code == 302
    clinician.refresh_from_db()
    assert clinician.check_password(new_password)


def test_password_reset_by_email_link(clinician: User, mailoutbox):
    client = Client()
    client.post("/accounts/password/reset/", {"email": clinician.email})
    assert len(mailoutbox) == 1
    link = next(line for line in mailoutbox[0].body.splitlines() if "/password/reset/" in line)
    path = link.split("testserver", 1)[1]
    new_password = "Kochkor-valley-2026"

    form_page = client.get(path, follow=True)
    response = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )

    assert response.status_code == 302
    clinician.refresh_from_db()
    assert clinician.check_password(new_password)
    # The link works once.
    again = client.get(path, follow=True)
    assert "expired" in again.content.decode()


def test_password_reset_does_not_reveal_whether_an_account_exists(db: None, mailoutbox):
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.kg"})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert mailoutbox == []
