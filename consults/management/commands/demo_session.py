"""`python manage.py demo_session` (development only): a video session joinable right now.

Books a doctor–patient session of a fresh referral of the demo patient (Асель Мамытова) with
the demo specialist, starting now, with the demo clinician and the patient invited, and
prints its URL. `clinician@demo.kg`, `specialist@demo.kg` and `patient@demo.kg` can open it in
two or three browsers a minute after `make run`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Specialty, User
from consults.models import Appointment, Participant, Referral
from consults.services import referrals as workflow
from ehr.models import Patient


class Command(BaseCommand):
    help = "Create a demo video session that starts now (development only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_DATA_ALLOWED:
            raise CommandError("Demo sessions exist only in development (DEBUG on).")
        try:
            clinician = User.objects.get(email="clinician@demo.kg")
            specialist = User.objects.get(email="specialist@demo.kg")
            coordinator = User.objects.get(email="coordinator@demo.kg")
            patient = Patient.objects.get(user__email="patient@demo.kg")
        except (User.DoesNotExist, Patient.DoesNotExist):
            raise CommandError("Load the demo world first: python manage.py load_demo") from None
        now = timezone.now()
        # One open at a time: asking again while one is open gives the same session.
        appointment = Appointment.objects.filter(
            specialist=specialist,
            referral__patient=patient,
            status=Appointment.Status.BOOKED,
            starts_at__lte=now,
            ends_at__gt=now + dt.timedelta(minutes=5),
        ).first()
        if appointment is None:
            appointment = self._book(clinician, specialist, coordinator, patient)
        url = settings.SITE_URL + reverse("consults:session", args=[appointment.pk])
        self.stdout.write(
            f"Session open now until {timezone.localtime(appointment.ends_at):%H:%M}:\n  {url}\n"
            "Join as specialist@demo.kg, clinician@demo.kg and patient@demo.kg "
            "(password: telemed-demo)."
        )

    @transaction.atomic
    def _book(
        self, clinician: User, specialist: User, coordinator: User, patient: Patient
    ) -> Appointment:
        referral = workflow.create_referral(
            clinician=clinician,
            patient=patient,
            specialty=Specialty.objects.get(code="cardiology"),
            urgency="routine",
            question="Контроль АД после подбора терапии (демо-сеанс видеосвязи).",
        )
        workflow.submit_referral(referral=referral, clinician=clinician)
        workflow.triage_referral(
            referral=referral,
            coordinator=coordinator,
            specialist=specialist,
            priority=3,
            mode=Referral.Mode.LIVE,
        )
        start = timezone.now().replace(second=0, microsecond=0)
        appointment = Appointment.objects.create(
            referral=referral,
            specialist=specialist,
            kind=Appointment.Kind.DOCTOR_PATIENT,
            starts_at=start,
            ends_at=start + dt.timedelta(minutes=30),
            booked_by=coordinator,
        )
        for user, role in (
            (specialist, Participant.Role.SPECIALIST),
            (clinician, Participant.Role.CLINICIAN),
            (patient.user, Participant.Role.PATIENT),
        ):
            appointment.participants.create(
                user=user, role=role, name=user.full_name, starts_at=start
            )
        workflow.move_referral(referral=referral, to=Referral.Status.SCHEDULED, actor=coordinator)
        referral.save(update_fields=["status"])
        return appointment
