from __future__ import annotations

import datetime as dt

import factory

from ehr.models import Patient
from tests.factories.accounts import OrganizationFactory


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    organization = factory.SubFactory(OrganizationFactory)
    pin = factory.Sequence(lambda n: f"1010119900{n:04d}")
    family_name = factory.Sequence(lambda n: f"Family{n}")
    given_name = "Aigul"
    birth_date = dt.date(1990, 1, 1)
