"""The registry: registration with a duplicate check, search in any script, by PIN or date."""

from __future__ import annotations

import pytest

from accounts.models import User
from ehr.models import Patient
from ehr.transliteration import skeleton, to_latin
from tests.conftest import logged_in_client
from tests.factories.ehr import PatientFactory

pytestmark = pytest.mark.django_db

NEW_PATIENT = {
    "pin": "21506198000123",
    "family_name": "Жумабеков",
    "given_name": "Бакыт",
    "patronymic": "Асанович",
    "family_name_latin": "",
    "given_name_latin": "",
    "birth_date": "1980-06-15",
    "sex": "male",
    "phone": "+996 700 123 456",
    "address": "с. Ат-Башы, ул. Токтогула, 3",
    "region": "naryn",
}


@pytest.mark.parametrize(
    ("cyrillic", "latin"),
    [
        ("Жумабеков", "Zhumabekov"),
        ("Жумабеков", "Jumabekov"),
        ("Асель", "Assel"),
        ("Гүлзат", "Gulzat"),
        ("Мамытова", "Mamytova"),
        ("Хасанов", "Khasanov"),
        ("Цой", "Tsoy"),
        ("Юлия", "Yuliya"),
    ],
)
def test_cyrillic_and_latin_spellings_share_a_skeleton(cyrillic: str, latin: str):
    assert skeleton(cyrillic) == skeleton(latin)


def test_latin_spelling_is_filled_in_from_cyrillic():
    assert to_latin("Мамытова Асель Үмөт") == "Mamytova Asel Umot"


def test_clinician_registers_a_patient_at_their_clinic(clinician: User, clinic):
    client = logged_in_client(clinician)

    response = client.post("/patients/new/", NEW_PATIENT)

    patient = Patient.objects.get(pin="21506198000123")
    assert response.status_code == 302
    assert response["Location"] == f"/patients/{patient.pk}/"
    assert patient.organization == clinic
    assert patient.family_name_latin == "Jumabekov"


def test_same_pin_is_refused_and_the_existing_patient_offered(clinician: User, patient: Patient):
    client = logged_in_client(clinician)

    response = client.post("/patients/new/", {**NEW_PATIENT, "pin": patient.pin})

    page = response.content.decode()
    assert response.status_code == 400
    assert "A patient with this PIN is already registered." in page
    assert f'href="/patients/{patient.pk}/"' in page
    assert Patient.objects.count() == 1


def test_same_name_and_birth_date_warns_then_registers_when_confirmed(clinician: User, clinic):
    existing = PatientFactory(
        organization=clinic, family_name="Zhumabekov", given_name="Bakyt", pin=None,
        birth_date="1980-06-15",
    )  # fmt: skip
    client = logged_in_client(clinician)

    warned = client.post("/patients/new/", NEW_PATIENT)
    assert warned.status_code == 400
    assert "may already be registered" in warned.content.decode()
    assert f"/patients/{existing.pk}/" in warned.content.decode()
    confirmed = client.post("/patients/new/", {**NEW_PATIENT, "confirmed_new": "on"})

    assert confirmed.status_code == 302
    assert Patient.objects.count() == 2


def test_a_malformed_pin_gets_a_clear_error(clinician: User, clinic):
    response = logged_in_client(clinician).post("/patients/new/", {**NEW_PATIENT, "pin": "123"})

    assert response.status_code == 400
    assert "exactly 14 digits" in response.content.decode()
    assert not Patient.objects.exists()


@pytest.mark.parametrize(
    "role_fixture", ["coordinator", "specialist", "patient_user", "admin_user"]
)
def test_only_clinicians_register_patients(request, role_fixture: str, clinic):
    user = request.getfixturevalue(role_fixture)

    response = logged_in_client(user).post("/patients/new/", NEW_PATIENT)

    assert response.status_code == 403
    assert not Patient.objects.filter(pin=NEW_PATIENT["pin"]).exists()


@pytest.mark.parametrize(
    "query", ["Zhumabekov", "жумабеков", "Jumabekov Bakyt", "2150619", "15.06.1980", "1980-06-15"]
)
def test_search_finds_by_any_spelling_pin_or_birth_date(clinician: User, clinic, query: str):
    logged_in_client(clinician).post("/patients/new/", NEW_PATIENT)

    page = logged_in_client(clinician).get("/patients/", {"q": query}).content.decode()

    assert "Жумабеков Бакыт Асанович" in page


def test_search_never_shows_another_clinics_patients(other_clinician: User, clinician, clinic):
    logged_in_client(clinician).post("/patients/new/", NEW_PATIENT)

    page = logged_in_client(other_clinician).get("/patients/", {"q": "Жумабеков"}).content.decode()

    assert "Жумабеков Бакыт" not in page


def test_clinician_corrects_identity_data(clinician: User, patient: Patient):
    client = logged_in_client(clinician)
    data = {**NEW_PATIENT, "pin": patient.pin, "family_name": "Мамытова-Осмонова"}

    response = client.post(f"/patients/{patient.pk}/edit/", data)

    patient.refresh_from_db()
    assert response.status_code == 302
    assert patient.family_name == "Мамытова-Осмонова"
    assert "osmonova" in patient.search_key
