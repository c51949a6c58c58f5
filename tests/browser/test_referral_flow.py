"""A referral carried from creation to a signed report by the demo users, in a browser."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from consults.models import Referral
from telemed.management.commands.load_demo import DEMO_PASSWORD
from tests.browser.conftest import log_in

BISHKEK = ZoneInfo("Asia/Bishkek")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in_as(browser: Any, base_url: str, email: str) -> Any:
    # One browser profile: each log-in replaces the previous user's session.
    page = browser.new_page()
    page.context.clear_cookies()
    return log_in(page, base_url, email, DEMO_PASSWORD)


def test_clinician_coordinator_patient_and_specialist_carry_a_referral(
    browser: Any, live_server: Any
):
    call_command("load_demo", verbosity=0)
    base = live_server.url

    clinician = log_in_as(browser, base, "clinician@demo.kg")
    clinician.goto(f"{base}/patients/?q=Мамытова")
    clinician.click("text=Мамытова Асель")
    clinician.click("text=Refer to a specialist")
    clinician.select_option("select[name=specialty]", label="Cardiology")
    clinician.select_option("select[name=urgency]", "urgent")
    clinician.fill("textarea[name=question]", "Pressure 180/110 despite two drugs. Adjust?")
    clinician.click("button[name=submit]")
    referral = Referral.objects.get(question__startswith="Pressure 180/110")
    assert referral.status == "submitted"

    coordinator = log_in_as(browser, base, "coordinator@demo.kg")
    coordinator.goto(f"{base}/consults/triage/")
    coordinator.click(f"text=#{referral.pk} ")
    coordinator.select_option("select[name=specialist]", label="Тимур Исаков")
    coordinator.select_option("select[name=mode]", "live")
    coordinator.click("form[action$='/triage/'] button[type=submit]")
    coordinator.select_option("select[name=kind]", "doctor_patient")
    coordinator.click("form[action$='/book/'] button[type=submit]")
    referral.refresh_from_db()
    assert referral.status == "scheduled"
    visit = referral.appointments.get()

    patient = log_in_as(browser, base, "patient@demo.kg")
    visits = patient.locator("section.card", has_text="My visits").inner_text()
    assert visit.starts_at.astimezone(BISHKEK).strftime("%d.%m.%Y %H:%M") in visits
    assert "Тимур Исаков" in visits

    specialist = log_in_as(browser, base, "specialist@demo.kg")
    specialist.goto(f"{base}/consults/{referral.pk}/")
    specialist.fill("textarea[name=findings]", "Resistant hypertension, no target organ damage")
    specialist.fill("input[name=diagnosis_code]", "I10")
    specialist.fill("input[name=diagnosis_text]", "Essential hypertension")
    specialist.fill("textarea[name=recommendations]", "Add spironolactone 25 mg")
    specialist.click("button[name=sign]")
    referral.refresh_from_db()
    assert referral.status == "report_signed"

    clinician = log_in_as(browser, base, "clinician@demo.kg")
    clinician.goto(f"{base}/consults/{referral.pk}/")
    assert "Add spironolactone 25 mg" in clinician.inner_text("main")
    clinician.click("form[action$='/close/'] button")
    referral.refresh_from_db()
    assert referral.status == "closed"
    assert referral.report.document.patient.user.email == "patient@demo.kg"
