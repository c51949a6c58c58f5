"""A believable demo world in Naryn region; development only, idempotent.

Running it again creates what is missing and leaves what exists alone (a changed password
stays changed). Later parts of the platform add their demo data here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Membership, Organization, Region, Specialty, User
from accounts.services.users import grant_membership
from accounts.specialties import ensure_specialties
from ehr.models import Patient
from ehr.services.patients import refresh_search_key
from telemed.demo_records import create_demo_records, create_demo_referrals

DEMO_PASSWORD = "telemed-demo"

Role = Membership.Role
Kind = Organization.Kind

CENTRE = "Нарынский региональный центр телемедицины"
AT_BASHY = "ЦСМ Ат-Башинского района"
KARA_KUJUR = "ФАП Кара-Кужур"
HOSPITAL = "Нарынская областная объединённая больница"

ORGANIZATIONS = [
    (CENTRE, Kind.REGIONAL_CENTRE, "г. Нарын, ул. Ленина, 35"),
    (AT_BASHY, Kind.RURAL_CLINIC, "с. Ат-Башы, ул. Токтогула, 12"),
    (KARA_KUJUR, Kind.RURAL_CLINIC, "с. Кара-Кужур, Кочкорский район"),
    (HOSPITAL, Kind.HOSPITAL, "г. Нарын, ул. Раззакова, 1"),
]

# (e-mail, full name, organization, role, specialties, is platform admin)
USERS = [
    ("admin@demo.kg", "Администратор Телемед", CENTRE, Role.ADMIN, [], True),
    ("coordinator@demo.kg", "Айжан Токтосунова", CENTRE, Role.COORDINATOR, [], False),
    ("clinician@demo.kg", "Бакыт Жумабеков", AT_BASHY, Role.CLINICIAN, [], False),
    ("clinician2@demo.kg", "Гулнара Абдыкадырова", KARA_KUJUR, Role.CLINICIAN, [], False),
    ("specialist@demo.kg", "Тимур Исаков", HOSPITAL, Role.SPECIALIST, ["cardiology"], False),
    ("radiologist@demo.kg", "Елена Ким", HOSPITAL, Role.SPECIALIST, ["radiology"], False),
    ("patient@demo.kg", "Асель Мамытова", AT_BASHY, Role.PATIENT, [], False),
]

DEMO_LOGINS = [
    ("admin@demo.kg", "administrator"),
    ("coordinator@demo.kg", "coordinator, Naryn regional centre"),
    ("clinician@demo.kg", "clinician, At-Bashy family medicine centre"),
    ("clinician2@demo.kg", "clinician, Kara-Kujur FAP"),
    ("specialist@demo.kg", "specialist (cardiology), Naryn hospital"),
    ("radiologist@demo.kg", "specialist (radiology), Naryn hospital"),
    ("patient@demo.kg", "patient of At-Bashy"),
]

# (PIN, family name, given name, patronymic, birth date, sex, clinic, account e-mail)
PATIENTS = [
    (
        "11503198500123",
        "Мамытова",
        "Асель",
        "Кубанычбековна",
        "1985-03-15",
        "female",
        AT_BASHY,
        "patient@demo.kg",
    ),
    ("22207195800456", "Осмонов", "Нурлан", "Бакытович", "1958-07-22", "male", AT_BASHY, None),
    ("10911196200789", "Иванова", "Мария", "Петровна", "1962-11-09", "female", AT_BASHY, None),
    ("20104201900321", "Токтогулов", "Эрмек", "Асанович", "2019-04-01", "male", AT_BASHY, None),
    (
        "12802199100654",
        "Абдыкеримова",
        "Гүлзат",
        "Маратовна",
        "1991-02-28",
        "female",
        KARA_KUJUR,
        None,
    ),
    ("21712197300987", "Садыков", "Бекзат", "Алмазбекович", "1973-12-17", "male", KARA_KUJUR, None),
]


class Command(BaseCommand):
    help = "Create the demo world (development only; safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_DATA_ALLOWED:
            raise CommandError("The demo world loads only in development (DEBUG on).")
        with transaction.atomic():
            ensure_specialties()
            organizations = self._organizations()
            users = self._users(organizations)
            patients = self._patients(organizations, users)
            create_demo_records(clinician=users["clinician@demo.kg"], patients=patients)
            self._dicom_nodes(organizations)
            from imaging.demo import load_demo_imaging

            load_demo_imaging(
                organization=organizations[AT_BASHY], received_by=users["clinician@demo.kg"]
            )
            create_demo_referrals(
                clinician=users["clinician@demo.kg"],
                coordinator=users["coordinator@demo.kg"],
                specialist=users["specialist@demo.kg"],
                patients=patients,
            )
        self.stdout.write(f"Demo world ready; every demo login's password is {DEMO_PASSWORD}")

    def _organizations(self) -> dict[str, Organization]:
        organizations = {}
        for name, kind, address in ORGANIZATIONS:
            organizations[name], _ = Organization.objects.get_or_create(
                name=name, defaults={"kind": kind, "region": Region.NARYN, "address": address}
            )
        return organizations

    def _dicom_nodes(self, organizations: dict[str, Organization]) -> None:
        from imaging.models import DicomNode

        # A modality a new user can send from at once with dcmtk's storescu (`-aet DEMO_CT`),
        # and a workstation that C-MOVE may deliver to (a dcmtk storescp on port 11113).
        DicomNode.objects.get_or_create(
            ae_title="DEMO_CT",
            defaults={
                "organization": organizations[AT_BASHY],
                "description": "Demo CT scanner (dcmtk storescu on this machine)",
                "host": "127.0.0.1",
            },
        )
        DicomNode.objects.get_or_create(
            ae_title="DEMO_WS",
            defaults={
                "organization": organizations[AT_BASHY],
                "description": "Demo workstation (dcmtk storescp on this machine, port 11113)",
                "host": "127.0.0.1",
                "port": 11113,
            },
        )

    def _users(self, organizations: dict[str, Organization]) -> dict[str, User]:
        users = {}
        for email, full_name, organization, role, specialty_codes, is_admin in USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(
                    email,
                    DEMO_PASSWORD,
                    full_name=full_name,
                    is_staff=is_admin,
                    is_superuser=is_admin,
                )
            grant_membership(
                user=user,
                organization=organizations[organization],
                role=role,
                specialties=list(Specialty.objects.filter(code__in=specialty_codes)),
            )
            users[email] = user
        return users

    def _patients(
        self, organizations: dict[str, Organization], users: dict[str, User]
    ) -> dict[str, Patient]:
        patients = {}
        for pin, family, given, patronymic, born, sex, clinic, email in PATIENTS:
            patient, created = Patient.objects.get_or_create(
                pin=pin,
                defaults={
                    "family_name": family,
                    "given_name": given,
                    "patronymic": patronymic,
                    "birth_date": dt.date.fromisoformat(born),
                    "sex": sex,
                    "organization": organizations[clinic],
                    "user": users[email] if email else None,
                },
            )
            if created:
                refresh_search_key(patient)
            patients[pin] = patient
        return patients
