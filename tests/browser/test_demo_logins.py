"""A new user's first minutes: each demo role logs in through a real browser on a phone-sized
screen and finds their work on the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from telemed.management.commands.load_demo import DEMO_PASSWORD
from tests.browser.conftest import SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# (login, what the dashboard must show)
ROLES = [
    ("admin@demo.kg", "Open administration"),
    ("coordinator@demo.kg", "Triage queue"),
    ("clinician@demo.kg", "patients in your care"),
    ("specialist@demo.kg", "My consultations"),
    ("patient@demo.kg", "My health record"),
]


@pytest.mark.parametrize(("email", "expected"), ROLES)
def test_each_demo_role_logs_in_and_sees_its_dashboard(
    browser: Any, live_server: Any, email: str, expected: str
):
    call_command("load_demo", verbosity=0)
    page = browser.new_page()

    log_in(page, live_server.url, email, DEMO_PASSWORD)

    assert expected in page.inner_text("main")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{email.split('@')[0]}.png"), full_page=True)
    page.click("text=Log out")
    page.wait_for_url(f"{live_server.url}/accounts/login/")


def test_patient_opens_own_record_and_sees_who_looked(browser: Any, live_server: Any):
    call_command("load_demo", verbosity=0)
    clinician = browser.new_page()
    log_in(clinician, live_server.url, "clinician@demo.kg", DEMO_PASSWORD)
    clinician.fill("input[name=q]", "Мамытова")
    clinician.press("input[name=q]", "Enter")
    clinician.click("text=Мамытова Асель")
    clinician.click("text=Log out")
    page = browser.new_page()

    log_in(page, live_server.url, "patient@demo.kg", DEMO_PASSWORD)
    page.click("text=Open my record")
    assert "Мамытова Асель Кубанычбековна" in page.inner_text("h1")
    page.click("text=Who has looked at my record")

    row = page.locator("tbody tr", has_text="Бакыт Жумабеков")
    # Her open diary alert on his dashboard, the search list, then her record: three reads.
    assert row.locator("td").nth(1).inner_text() == "3"
    page.screenshot(path=str(SCREENSHOTS / "patient-access-log.png"), full_page=True)


def test_switching_to_kyrgyz_and_russian_in_the_header(browser: Any, live_server: Any):
    call_command("load_demo", verbosity=0)
    page = browser.new_page()
    log_in(page, live_server.url, "clinician@demo.kg", DEMO_PASSWORD)

    page.click("button[name=language][value=ky]")
    kyrgyz = page.inner_text("body")
    page.click("button[name=language][value=ru]")
    russian = page.inner_text("body")

    assert page.get_attribute("html", "lang") == "ru"
    assert "Чыгуу" in kyrgyz  # "Log out"
    assert "Выйти" in russian
    page.screenshot(path=str(SCREENSHOTS / "dashboard-clinician-ru.png"), full_page=True)
