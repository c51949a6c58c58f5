"""Three interface languages, complete catalogues, per-user language and time zone."""

from __future__ import annotations

import gettext
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.test import Client

from accounts.models import AuditEvent, User
from tests.conftest import logged_in_client

LOCALE_DIR = Path(settings.BASE_DIR) / "telemed" / "locale"


def catalogue(language: str) -> polib.POFile:
    return polib.pofile(str(LOCALE_DIR / language / "LC_MESSAGES" / "django.po"))


@pytest.mark.parametrize("language", ["ky", "ru"])
def test_every_interface_string_is_translated(language: str):
    po = catalogue(language)

    untranslated = [entry.msgid for entry in po if not entry.obsolete and not entry.translated()]

    assert len(po) > 100
    assert untranslated == []


@pytest.mark.parametrize("language", ["ky", "ru"])
def test_compiled_catalogue_matches_its_source(language: str):
    # The .mo files are committed (a fresh machine needs no gettext); they must not lag.
    po = catalogue(language)
    mo_path = LOCALE_DIR / language / "LC_MESSAGES" / "django.mo"
    with mo_path.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)

    stale = [
        entry.msgid
        for entry in po
        if not entry.obsolete and not entry.msgid_plural and not entry.msgctxt
        and compiled.gettext(entry.msgid) != entry.msgstr
    ]  # fmt: skip

    assert stale == []


def translation_of(language: str, msgid: str) -> str:
    return next(entry.msgstr for entry in catalogue(language) if entry.msgid == msgid)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["ky", "ru", "en"])
def test_login_page_speaks_the_browsers_language(language: str):
    response = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE=language)

    page = response.content.decode()
    expected = (
        "Forgot your password?"
        if language == "en"
        else translation_of(language, "Forgot your password?")
    )
    assert f'<html lang="{language}">' in page
    assert expected in page


@pytest.mark.django_db
def test_language_switch_is_remembered_in_the_users_profile(clinician: User):
    client = logged_in_client(clinician)

    client.post("/accounts/language/", {"language": "ky", "next": "/"})

    clinician.refresh_from_db()
    assert clinician.language == "ky"
    # A new session on another device, whatever the browser says, speaks Kyrgyz.
    other_device = logged_in_client(clinician)
    page = other_device.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="ky">' in page
    assert translation_of("ky", "Log out") in page


@pytest.mark.django_db
def test_anonymous_language_switch_sets_the_cookie(db: None):
    client = Client()

    client.post("/accounts/language/", {"language": "ru", "next": "/accounts/login/"})

    assert '<html lang="ru">' in client.get("/accounts/login/").content.decode()


@pytest.mark.django_db
def test_times_show_in_asia_bishkek_by_default_and_in_the_users_own_zone(
    coordinator: User, settings
):
    import datetime as dt

    AuditEvent.objects.create(
        action="view", outcome="allowed", region="naryn", actor_label="Timestamp probe",
        at=dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC),
    )  # fmt: skip
    client = logged_in_client(coordinator)

    bishkek = client.get("/accounts/audit/", {"actor": "probe"}).content.decode()
    coordinator.time_zone = "Europe/Moscow"
    coordinator.save()
    moscow = client.get("/accounts/audit/", {"actor": "probe"}).content.decode()

    assert "2026-03-01 12:00:00" in bishkek  # UTC+6
    assert "Asia/Bishkek" in bishkek
    assert "2026-03-01 09:00:00" in moscow  # UTC+3
    assert "Europe/Moscow" in moscow


@pytest.mark.django_db
def test_profile_refuses_an_unknown_time_zone(clinician: User):
    client = logged_in_client(clinician)

    response = client.post(
        "/accounts/profile/",
        {"full_name": "Bakyt", "phone": "", "language": "", "time_zone": "Mars/Olympus"},
    )

    assert response.status_code == 200
    clinician.refresh_from_db()
    assert clinician.time_zone == "Asia/Bishkek"
