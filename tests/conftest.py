"""Shared fixtures: a small world of two regions, their organizations and people of every role.

Naryn: a regional centre, two rural clinics (At-Bashy, Kara-Kujur) and a hospital.
Talas: a regional centre and a rural clinic, to show that regions do not see each other.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership, Organization, Region, User
from ehr.models import Patient
from tests.factories.accounts import PASSWORD, OrganizationFactory, member
from tests.factories.ehr import PatientFactory

Role = Membership.Role
Kind = Organization.Kind


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Tests read English unless they ask for another language (the site's default is Russian).
    settings.LANGUAGE_CODE = "en"


@pytest.fixture(autouse=True)
def _own_channel_layer() -> None:
    """Each test gets channel layer objects of its own, because each test runs event loops
    of its own (async_to_sync, asyncio.run) and channels_redis 4.3 keeps asyncio locks across
    them: a receive cancelled while waiting for ChannelLock (the lock on the process's shared
    "specific.<prefix>!" channel) leaves that lock behind, bound to the ended loop, and the next
    loop that waits on it fails with "Lock ... is bound to a different event loop" (seen in CI
    as signaling tests with two sockets timing out). A server process runs one loop for its
    whole life and never meets this."""
    from channels.layers import channel_layers

    channel_layers.backends = {}


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_in_process() -> None:
    # With REDIS_URL set (CI's second run) the settings send tasks to Redis; the suite has no
    # worker of its own, so tasks run in-process, real code all the same. The platform test
    # starts a real worker against Redis.
    from telemed.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


def require_program(program: str, package: str) -> str:
    """The path of a system program; skip (fail in CI) with the Debian package to install."""
    path = shutil.which(program)
    if path is None:
        message = f"{program} is missing: install the Debian package '{package}'"
        if os.environ.get("CI_REQUIRE_SYSTEM_PROGRAMS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def naryn_centre(db: None) -> Organization:
    return OrganizationFactory(name="Naryn centre", kind=Kind.REGIONAL_CENTRE, region=Region.NARYN)


@pytest.fixture
def clinic(db: None) -> Organization:
    return OrganizationFactory(name="At-Bashy FMC", kind=Kind.RURAL_CLINIC, region=Region.NARYN)


@pytest.fixture
def other_clinic(db: None) -> Organization:
    return OrganizationFactory(name="Kara-Kujur FAP", kind=Kind.RURAL_CLINIC, region=Region.NARYN)


@pytest.fixture
def hospital(db: None) -> Organization:
    return OrganizationFactory(name="Naryn hospital", kind=Kind.HOSPITAL, region=Region.NARYN)


@pytest.fixture
def talas_centre(db: None) -> Organization:
    return OrganizationFactory(name="Talas centre", kind=Kind.REGIONAL_CENTRE, region=Region.TALAS)


@pytest.fixture
def talas_clinic(db: None) -> Organization:
    return OrganizationFactory(name="Talas FMC", kind=Kind.RURAL_CLINIC, region=Region.TALAS)


@pytest.fixture
def clinician(clinic: Organization) -> User:
    return member(clinic, Role.CLINICIAN, email="clinician@example.kg", full_name="Bakyt Clinician")


@pytest.fixture
def other_clinician(other_clinic: Organization) -> User:
    return member(other_clinic, Role.CLINICIAN, email="other.clinician@example.kg")


@pytest.fixture
def specialist(hospital: Organization) -> User:
    return member(hospital, Role.SPECIALIST, email="specialist@example.kg")


@pytest.fixture
def coordinator(naryn_centre: Organization) -> User:
    return member(naryn_centre, Role.COORDINATOR, email="coordinator@example.kg")


@pytest.fixture
def talas_coordinator(talas_centre: Organization) -> User:
    return member(talas_centre, Role.COORDINATOR, email="talas.coordinator@example.kg")


@pytest.fixture
def admin_user(naryn_centre: Organization) -> User:
    user = member(naryn_centre, Role.ADMIN, email="admin@example.kg", is_staff=True)
    return user


@pytest.fixture
def patient_user(clinic: Organization) -> User:
    return member(clinic, Role.PATIENT, email="patient@example.kg", full_name="Asel Patient")


@pytest.fixture
def patient(clinic: Organization, patient_user: User) -> Patient:
    return PatientFactory(
        organization=clinic, user=patient_user, family_name="Mamytova", given_name="Asel"
    )


@pytest.fixture
def other_patient(other_clinic: Organization) -> Patient:
    return PatientFactory(organization=other_clinic, family_name="Sadykov", given_name="Bekzat")


@pytest.fixture
def talas_patient(talas_clinic: Organization) -> Patient:
    return PatientFactory(organization=talas_clinic, family_name="Talasova", given_name="Aida")


def logged_in_client(user: User) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return client
