"""Fixtures shared by the consultation tests: the scheduling world (a cardiologist with
office hours and a referral to book, the clock stopped), a booked video session, and the
loopback patch and decoder spy of the media broker tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver
import pytest

from accounts.models import Specialty, User
from consults.models import Appointment, AvailabilityRule, Referral
from consults.services import scheduling
from ehr.models import Patient
from tests.consults.referrals import triaged_referral
from tests.consults.scheduling_clock import NOW
from tests.consults.sessions import book_session

# --- scheduling -------------------------------------------------------------------------------


@pytest.fixture
def frozen(time_machine: Any) -> dt.datetime:
    time_machine.move_to(NOW, tick=False)
    return NOW


@pytest.fixture
def cardiology(db: None) -> Specialty:
    # Migrations load the specialties, but a transactional test that ran earlier flushed them.
    specialty, _ = Specialty.objects.get_or_create(
        code="cardiology",
        defaults={"name_en": "Cardiology", "name_ru": "Кардиология", "name_ky": "Кардиология"},
    )
    return specialty


@pytest.fixture
def cardiologist(specialist: User, cardiology: Specialty) -> User:
    specialist.memberships.get().specialties.add(cardiology)
    return specialist


@pytest.fixture
def office_hours(cardiologist: User) -> list[AvailabilityRule]:
    """Monday to Friday, 10:00–12:00 Bishkek time, 30-minute slots."""
    return [
        scheduling.add_availability_rule(
            specialist=cardiologist,
            weekday=weekday,
            start_time=dt.time(10),
            end_time=dt.time(12),
            slot_minutes=30,
        )  # fmt: skip
        for weekday in range(5)
    ]


@pytest.fixture
def referral(
    frozen: dt.datetime, clinician: User, coordinator: User, cardiologist: User,
    patient: Patient, cardiology: Specialty, office_hours: list,
) -> Referral:  # fmt: skip
    return triaged_referral(
        clinician=clinician, coordinator=coordinator, specialist=cardiologist, patient=patient,
        specialty=cardiology,
    )  # fmt: skip


# --- video sessions ---------------------------------------------------------------------------


@pytest.fixture
def session(clinician: User, coordinator: User, specialist: User, patient: Patient) -> Appointment:
    return book_session(
        clinician=clinician, coordinator=coordinator, specialist=specialist, patient=patient
    )


# --- the media broker -------------------------------------------------------------------------


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice offers 127.0.0.1 as its only host candidate (it leaves loopback out otherwise).
    Modules that call over WebRTC ask for it with ``pytestmark``."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def decoders_created(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A spy on aiortc: the codec name of every decoder aiortc instantiates."""
    created: list[str] = []
    real = aiortc.rtcrtpreceiver.get_decoder

    def spy(codec: Any) -> Any:
        created.append(codec.name)
        return real(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", spy)
    return created
