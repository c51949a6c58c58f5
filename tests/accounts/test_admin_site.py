"""The Django admin asks the same access policies as the rest of the site."""

from __future__ import annotations

import pytest

from accounts.models import Organization, User
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform_admin(admin_user: User) -> User:
    # The admin role with access to the admin site, but not a Django superuser.
    assert admin_user.is_staff
    assert not admin_user.is_superuser
    return admin_user


def test_platform_admin_manages_organizations_and_users(
    platform_admin: User, clinic: Organization, clinician: User
):
    client = logged_in_client(platform_admin)

    organizations = client.get("/admin/accounts/organization/")
    renamed = client.post(
        f"/admin/accounts/organization/{clinic.pk}/change/",
        {"name": "At-Bashy FMC (new building)", "kind": clinic.kind, "region": clinic.region,
         "address": "", "phone": "", "is_active": "on"},
    )  # fmt: skip
    users = client.get("/admin/accounts/user/")

    assert organizations.status_code == 200
    assert renamed.status_code == 302
    clinic.refresh_from_db()
    assert clinic.name == "At-Bashy FMC (new building)"
    assert clinician.email in users.content.decode()


def test_platform_admin_cannot_make_anyone_a_superuser(platform_admin: User, clinician: User):
    client = logged_in_client(platform_admin)

    page = client.get(f"/admin/accounts/user/{clinician.pk}/change/").content.decode()

    assert 'name="is_superuser"' not in page


def test_staff_clinician_gets_only_what_the_policies_give_in_the_admin(
    clinician: User, other_clinician: User, clinic: Organization
):
    clinician.is_staff = True
    clinician.save()
    client = logged_in_client(clinician)

    change = client.post(
        f"/admin/accounts/organization/{clinic.pk}/change/",
        {"name": "Renamed", "kind": clinic.kind, "region": clinic.region, "is_active": "on"},
    )
    users = client.get("/admin/accounts/user/").content.decode()

    assert change.status_code == 403  # the directory is readable, not editable
    assert client.get("/admin/accounts/auditevent/").status_code == 403
    assert clinician.email in users
    assert other_clinician.email not in users


def test_audit_events_are_read_only_in_the_admin(platform_admin: User, clinician: User):
    client = logged_in_client(platform_admin)
    from accounts.models import AuditEvent

    event = AuditEvent.objects.filter(actor_user_id=platform_admin.pk).first()
    listing = client.get("/admin/accounts/auditevent/")
    delete = client.post(f"/admin/accounts/auditevent/{event.pk}/delete/", {"post": "yes"})

    assert listing.status_code == 200
    assert delete.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_no_clinical_data_in_the_admin(platform_admin: User):
    client = logged_in_client(platform_admin)

    assert client.get("/admin/ehr/patient/").status_code == 404
