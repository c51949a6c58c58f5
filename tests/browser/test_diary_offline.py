"""The health diary on a phone with a weak link: entries made offline wait on the phone and
are sent, each exactly once, when the link returns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from ehr.models import Alert, Observation, Patient
from telemed.management.commands.load_demo import DEMO_PASSWORD
from tests.browser.conftest import SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUEUE = "#diary-queue li[data-status]"


def record(page: Any, measure: str, **values: str) -> None:
    page.click(f".diary-tab[data-measure={measure}]")
    form = page.locator(f"form.diary-form[data-measure={measure}]")
    for name, value in values.items():
        form.locator(f"[name={name}]").fill(value)
    form.locator("button.diary-save").click()


def count(page: Any, status: str) -> int:
    return page.locator(f"#diary-queue li[data-status={status}]").count()


def wait_for_count(page: Any, status: str, expected: int) -> None:
    page.wait_for_function(
        "([status, expected]) => document.querySelectorAll("
        "`#diary-queue li[data-status=${status}]`).length === expected",
        arg=[status, expected],
    )


def test_entries_made_offline_wait_and_are_sent_once_when_back_online(
    browser: Any, live_server: Any
):
    call_command("load_demo", verbosity=0)
    patient = Patient.objects.get(user__email="patient@demo.kg")
    before = Observation.objects.filter(patient=patient, source_system="diary").count()
    page = browser.new_page()
    log_in(page, live_server.url, "patient@demo.kg", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/diary/")

    record(page, "blood_pressure", systolic="135", diastolic="85")
    wait_for_count(page, "sent", 1)

    browser.set_offline(True)
    record(page, "pulse", value="72")
    record(page, "glucose", value="6,1")
    wait_for_count(page, "waiting", 2)
    assert page.locator("#diary-offline").is_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "diary-phone-offline.png"), full_page=True)
    assert Observation.objects.filter(patient=patient, source_system="diary").count() == before + 1

    browser.set_offline(False)
    wait_for_count(page, "sent", 3)

    entries = Observation.objects.filter(patient=patient, source_system="diary")
    assert entries.count() == before + 3
    # Each UUID the page made is stored exactly once, with the measure it was made for.
    uuids = page.eval_on_selector_all(QUEUE, "items => items.map(i => i.dataset.uuid)")
    assert len(uuids) == 3
    for entry_uuid in uuids:
        assert entries.filter(source_id=entry_uuid).count() == 1
    sent = entries.filter(source_id__in=uuids)
    assert sorted(sent.values_list("code", flat=True)) == ["15074-8", "85354-9", "8867-4"]
    assert sent.get(code="15074-8").value == Decimal("6.1")
    page.wait_for_selector(".diary-chart[data-measure=glucose] canvas")
    page.screenshot(path=str(SCREENSHOTS / "diary-phone.png"), full_page=True)


def test_a_refused_entry_stays_on_the_phone_with_the_reason(browser: Any, live_server: Any):
    call_command("load_demo", verbosity=0)
    page = browser.new_page()
    log_in(page, live_server.url, "patient@demo.kg", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/diary/")

    # The page checks ranges itself; an entry the server refuses anyway (a rule changed, an
    # old page) is put straight into the queue, as an old queue would hold it.
    page.evaluate(
        """() => {
          const key = JSON.parse(document.getElementById('diary-config').textContent).queueKey;
          localStorage.setItem(key, JSON.stringify([{uuid: crypto.randomUUID(),
            measure: 'spo2', values: {value: '120'}, measured_at: new Date().toISOString(),
            summary: '120 %', status: 'waiting'}]));
        }"""
    )
    page.reload()

    wait_for_count(page, "refused", 1)
    assert "between 50 and 100" in page.inner_text("#diary-queue")
    page.click("#diary-queue button:has-text('Remove')")
    wait_for_count(page, "refused", 0)


def test_the_clinician_sees_charts_and_sets_a_range(browser: Any, live_server: Any):
    call_command("load_demo", verbosity=0)
    patient = Patient.objects.get(user__email="patient@demo.kg")
    page = browser.new_page()
    log_in(page, live_server.url, "patient@demo.kg", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/diary/")
    record(page, "blood_pressure", systolic="150", diastolic="95")
    record(page, "weight", value="68,4")
    wait_for_count(page, "sent", 2)
    alerts_before = Alert.objects.filter(patient=patient).count()
    page.click("text=Log out")
    page.set_viewport_size({"width": 1100, "height": 900})

    log_in(page, live_server.url, "clinician@demo.kg", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/diary/patients/{patient.pk}/")
    form = page.locator("#threshold-blood_pressure")
    form.locator("[name=blood_pressure-low]").fill("90")
    form.locator("[name=blood_pressure-high]").fill("140")
    form.locator("[name=blood_pressure-second_high]").fill("90")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("text=Target range saved.")
    page.wait_for_selector(".diary-chart[data-measure=blood_pressure] canvas")

    assert "90–140" in page.inner_text(".diary-chart[data-measure=blood_pressure] figcaption")
    # A new range does not re-judge readings already stored.
    assert Alert.objects.filter(patient=patient).count() == alerts_before
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "diary-clinician.png"), full_page=True)
