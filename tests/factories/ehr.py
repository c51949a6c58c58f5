from __future__ import annotations

import datetime as dt

import factory

from ehr.models import Patient
from ehr.services.patients import refresh_search_key
from tests.factories.accounts import OrganizationFactory


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    pin = factory.Sequence(lambda n: f"1010119900{n:04d}")
    family_name = factory.Sequence(lambda n: f"Family{n}")
    given_name = "Aigul"
    birth_date = dt.date(1990, 1, 1)

    @factory.post_generation
    def searchable(self, create: bool, extracted: object, **kwargs: object) -> None:
        # As the registration service does: Latin names and the transliterated search key.
        if create:
            refresh_search_key(self)
            self.refresh_from_db()
