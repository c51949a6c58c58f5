from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import Membership, Organization, User
from ehr.models import Patient
from telemed.management.commands.load_demo import DEMO_LOGINS, DEMO_PASSWORD

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Organization, User, Membership, Patient))


def test_demo_world_loads_once_and_again_changes_nothing():
    call_command("load_demo", verbosity=0)
    first = counts()
    changed = User.objects.get(email="clinician@demo.kg")
    changed.set_password("a-password-the-user-chose")
    changed.save()

    call_command("load_demo", verbosity=0)

    assert counts() == first
    assert User.objects.get(email="clinician@demo.kg").check_password("a-password-the-user-chose")


def test_demo_world_has_a_regional_centre_clinics_a_hospital_and_every_role():
    call_command("load_demo", verbosity=0)

    kinds = sorted(Organization.objects.values_list("kind", flat=True))
    roles = set(Membership.objects.values_list("role", flat=True))

    assert kinds == ["hospital", "regional_centre", "rural_clinic", "rural_clinic"]
    assert set(Organization.objects.values_list("region", flat=True)) == {"naryn"}
    assert roles == set(Membership.Role.values)
    assert Patient.objects.get(user__email="patient@demo.kg").organization.kind == "rural_clinic"
    assert Patient.objects.count() >= 5


@pytest.mark.parametrize(("email", "description"), DEMO_LOGINS)
def test_every_printed_demo_login_works(email: str, description: str):
    call_command("load_demo", verbosity=0)
    client = Client()

    response = client.post("/accounts/login/", {"username": email, "password": DEMO_PASSWORD})

    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_demo_world_has_referrals_in_the_states_a_centre_sees():
    from consults.models import Referral

    call_command("load_demo", verbosity=0)

    statuses = set(Referral.objects.values_list("status", flat=True))
    assert statuses == {
        "draft", "submitted", "triaged", "scheduled", "in_session", "report_signed", "closed",
        "declined", "cancelled",
    }  # fmt: skip
    specialist = User.objects.get(email="specialist@demo.kg")
    assert Referral.objects.filter(specialist=specialist, status="triaged").exists()


def test_demo_session_is_joinable_now_by_the_three_demo_users(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("load_demo", verbosity=0)
    output = io.StringIO()

    call_command("demo_session", stdout=output)

    path = re.search(r"http\S+", output.getvalue()).group().removeprefix(settings.SITE_URL)
    for email in ("specialist@demo.kg", "clinician@demo.kg", "patient@demo.kg"):
        client = Client()
        client.force_login(User.objects.get(email=email))
        assert client.get(path).status_code == 200, email
    assert Client().get(path).status_code == 404
