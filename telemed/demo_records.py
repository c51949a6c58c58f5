"""The demo patients' records and some weeks of health diary (used by load_demo).

Written straight into the tables (no alerts e-mailed, no broadcasts): this is history, not
news. Dates are relative to the day the demo world is loaded.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal

from django.utils import timezone

from accounts.models import User
from ehr.models import (
    Alert,
    Allergy,
    ClinicalNote,
    Condition,
    DiaryMeasure,
    DiaryThreshold,
    Encounter,
    Medication,
    Observation,
    Patient,
)

DEMO = "demo"
DIARY_WEEKS = 6


def _key(patient: Patient, *parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"telemed-demo:{patient.pin}:{parts}"))


def _lab(patient: Patient, when: dt.datetime, code: str, display: str, value: str, unit: str,
         low: str | None, high: str | None) -> Observation:  # fmt: skip
    number = Decimal(value)
    flag = ""
    if high is not None and number > Decimal(high):
        flag = "H"
    elif low is not None and number < Decimal(low):
        flag = "L"
    return Observation(
        patient=patient, category="laboratory", source="lab", code=code, display=display,
        value=number, unit=unit, reference_low=low, reference_high=high, interpretation=flag,
        effective_at=when, source_system=DEMO, source_id=_key(patient, code, when),
    )  # fmt: skip


def _bp(patient: Patient, when: dt.datetime, systolic: int, diastolic: int) -> Observation:
    return Observation(
        patient=patient, category="vital-signs", source="patient", code="85354-9",
        display="Blood pressure", unit="mm[Hg]", effective_at=when,
        components=[
            {"code": "8480-6", "display": "Systolic blood pressure", "value": systolic,
             "unit": "mm[Hg]"},
            {"code": "8462-4", "display": "Diastolic blood pressure", "value": diastolic,
             "unit": "mm[Hg]"},
        ],
        source_system="diary", source_id=_key(patient, "bp", when),
    )  # fmt: skip


def _vital(patient: Patient, when: dt.datetime, code: str, display: str, value: float,
           unit: str, source: str = "patient") -> Observation:  # fmt: skip
    return Observation(
        patient=patient, category="vital-signs", source=source, code=code, display=display,
        value=Decimal(f"{value:.1f}"), unit=unit, effective_at=when,
        source_system="diary" if source == "patient" else DEMO,
        source_id=_key(patient, code, when),
    )  # fmt: skip


def create_demo_records(*, clinician: User, patients: dict[str, Patient]) -> None:
    """Records for the demo patients (by PIN); skipped for a patient who already has one."""
    now = timezone.localtime().replace(minute=0, second=0, microsecond=0)
    rng = random.Random(20261125)  # the same believable world every time
    asel = patients["11503198500123"]
    nurlan = patients["22207195800456"]
    maria = patients["10911196200789"]
    if asel.encounter_set.filter(source_system=DEMO).exists():
        return

    def at(days_ago: float, hour: int = 9) -> dt.datetime:
        return (now - dt.timedelta(days=days_ago)).replace(hour=hour)

    def entry(model: type, patient: Patient, key: str, **fields: object) -> None:
        model.objects.create(patient=patient, recorded_by=clinician, source_system=DEMO,
                             source_id=_key(patient, key), **fields)  # fmt: skip

    # Asel Mamytova, 41: hypertension followed from the diary.
    entry(
        Encounter,
        asel,
        "e1",
        kind="outpatient",
        started_at=at(60),
        reason="Головные боли, давление 160/100",
        organization=asel.organization,
    )
    entry(
        Condition,
        asel,
        "c1",
        icd10_code="I10",
        description="Эссенциальная гипертензия",
        onset_date=(now - dt.timedelta(days=60)).date(),
        recorded_at=at(60),
    )
    entry(
        Medication,
        asel,
        "m1",
        name="Амлодипин",
        dose="5 мг",
        route="внутрь",
        frequency="1 раз в день",
        start_date=(now - dt.timedelta(days=60)).date(),
        recorded_at=at(60),
    )
    entry(
        Allergy,
        asel,
        "a1",
        substance="Пенициллин",
        reaction="крапивница",
        severity="moderate",
        recorded_at=at(60),
    )
    entry(
        ClinicalNote,
        asel,
        "n1",
        title="Осмотр",
        text="Жалобы на головные боли по утрам. АД 160/100, ЧСС 84. Назначен амлодипин 5 мг. Дневник давления дважды в день, контроль через 2 недели.",
        recorded_at=at(60, 10),
    )
    entry(
        Encounter,
        asel,
        "e2",
        kind="teleconsultation",
        started_at=at(30),
        reason="Контроль АД по дневнику",
        organization=asel.organization,
    )
    entry(
        ClinicalNote,
        asel,
        "n2",
        title="Телеконсультация",
        text="По дневнику АД 135–150/85–95. Добавлен лизиноприл 10 мг.",
        recorded_at=at(30, 10),
    )
    entry(
        Medication,
        asel,
        "m2",
        name="Лизиноприл",
        dose="10 мг",
        route="внутрь",
        frequency="1 раз в день",
        start_date=(now - dt.timedelta(days=30)).date(),
        recorded_at=at(30),
    )
    labs = [
        _lab(asel, at(58, 8), "2093-3", "Холестерин общий", "6.4", "mmol/L", None, "5.2"),
        _lab(asel, at(58, 8), "2160-0", "Креатинин", "78", "umol/L", "44", "97"),
        _lab(asel, at(58, 8), "2823-3", "Калий", "4.2", "mmol/L", "3.5", "5.1"),
        _lab(asel, at(3, 8), "2823-3", "Калий", "4.6", "mmol/L", "3.5", "5.1"),
    ]
    diary: list[Observation] = []
    for day in range(DIARY_WEEKS * 7, 0, -1):
        trend = 12 * day / (DIARY_WEEKS * 7)  # pressure comes down with treatment
        for hour in (7, 20):
            systolic = int(128 + trend + rng.gauss(0, 5))
            diastolic = int(82 + trend / 2 + rng.gauss(0, 3))
            diary.append(_bp(asel, at(day, hour), systolic, diastolic))
        diary.append(_vital(asel, at(day, 7), "8867-4", "Heart rate", 72 + rng.gauss(0, 4), "/min"))
        if day % 7 == 0:
            diary.append(
                _vital(
                    asel,
                    at(day, 8),
                    "29463-7",
                    "Body weight",
                    74 - (42 - day) / 30 + rng.gauss(0, 0.2),
                    "kg",
                )
            )
    high = [_bp(asel, at(1, 21), 168, 104), _bp(asel, at(0.2, 8), 158, 98)]
    diary += high
    diary.append(Observation(patient=asel, category="survey", source="patient", code="75325-1",
                             display="Symptom", value_text="Болит голова с утра, шум в ушах",
                             effective_at=at(1, 21), source_system="diary",
                             source_id=_key(asel, "symptom", 1)))  # fmt: skip
    Observation.objects.bulk_create(labs + diary)
    DiaryThreshold.objects.create(patient=asel, measure=DiaryMeasure.BLOOD_PRESSURE,
                                  high=Decimal(150), low=Decimal(90), second_high=Decimal(95),
                                  second_low=Decimal(55), set_by=clinician)  # fmt: skip
    DiaryThreshold.objects.create(patient=asel, measure=DiaryMeasure.PULSE, high=Decimal(100),
                                  low=Decimal(50), set_by=clinician)  # fmt: skip
    for observation in high:
        observation.refresh_from_db()
        systolic, diastolic = (c["value"] for c in observation.components)
        reasons = ["SYS > 150" if systolic > 150 else "", "DIA > 95" if diastolic > 95 else ""]
        observation.interpretation = "H"
        observation.save(update_fields=["interpretation"])
        Alert.objects.create(
            patient=asel,
            observation=observation,
            measure=DiaryMeasure.BLOOD_PRESSURE,
            created_at=observation.effective_at,
            message=f"{observation.value_display} ({', '.join(r for r in reasons if r)})",
        )

    # Nurlan Osmonov, 68: type 2 diabetes, glucose from the diary, HbA1c from the lab.
    entry(
        Encounter,
        nurlan,
        "e1",
        kind="outpatient",
        started_at=at(90),
        reason="Сахарный диабет, плановый осмотр",
        organization=nurlan.organization,
    )
    entry(
        Condition,
        nurlan,
        "c1",
        icd10_code="E11.9",
        description="Сахарный диабет 2 типа без осложнений",
        onset_date=(now - dt.timedelta(days=2000)).date(),
        recorded_at=at(90),
    )
    entry(
        Condition,
        nurlan,
        "c2",
        icd10_code="I25.1",
        description="Атеросклеротическая болезнь сердца",
        recorded_at=at(90),
    )
    entry(
        Medication,
        nurlan,
        "m1",
        name="Метформин",
        dose="1000 мг",
        route="внутрь",
        frequency="2 раза в день",
        recorded_at=at(90),
    )
    entry(
        Medication,
        nurlan,
        "m2",
        name="Аторвастатин",
        dose="20 мг",
        route="внутрь",
        frequency="вечером",
        recorded_at=at(90),
    )
    nurlan_obs = [
        _lab(nurlan, at(88, 8), "4548-4", "HbA1c", "8.4", "%", None, "6.0"),
        _lab(nurlan, at(5, 8), "4548-4", "HbA1c", "7.3", "%", None, "6.0"),
        _lab(nurlan, at(5, 8), "2160-0", "Креатинин", "104", "umol/L", "62", "106"),
    ]
    for day in range(DIARY_WEEKS * 7, 0, -1):
        nurlan_obs.append(
            _vital(
                nurlan,
                at(day, 7),
                "15074-8",
                "Glucose",
                7.8 - day / 40 + rng.gauss(0, 0.6),
                "mmol/L",
            )
        )
    Observation.objects.bulk_create(nurlan_obs)
    DiaryThreshold.objects.create(patient=nurlan, measure=DiaryMeasure.GLUCOSE, low=Decimal("3.9"),
                                  high=Decimal("10.0"), set_by=clinician)  # fmt: skip

    # Maria Ivanova, 64: COPD, seen at home.
    entry(
        Encounter,
        maria,
        "e1",
        kind="home",
        started_at=at(14),
        reason="Одышка при нагрузке",
        organization=maria.organization,
    )
    entry(
        Condition,
        maria,
        "c1",
        icd10_code="J44.9",
        description="Хроническая обструктивная болезнь лёгких",
        recorded_at=at(14),
    )
    entry(
        Medication,
        maria,
        "m1",
        name="Тиотропий",
        dose="18 мкг",
        route="ингаляционно",
        frequency="1 раз в день",
        recorded_at=at(14),
    )
    Observation.objects.bulk_create([
        _vital(maria, at(14, 11), "59408-5", "Oxygen saturation", 93, "%", source="clinician"),
        _vital(maria, at(14, 11), "8310-5", "Body temperature", 36.7, "Cel", source="clinician"),
    ])  # fmt: skip


def create_demo_referrals(
    *, clinician: User, coordinator: User, specialist: User, patients: dict[str, Patient]
) -> None:
    """Referrals in the states a regional centre sees on an ordinary day."""
    from accounts.models import Specialty
    from consults.models import Appointment, AvailabilityRule, Referral
    from consults.services import referrals as workflow
    from consults.services.scheduling import book_appointment, free_slots
    from consults.services.sessions import start_session

    if Referral.objects.exists():
        return
    cardiology = Specialty.objects.get(code="cardiology")
    pulmonology = Specialty.objects.get(code="pulmonology")
    asel = patients["11503198500123"]
    nurlan = patients["22207195800456"]
    maria = patients["10911196200789"]

    def new(patient: Patient, specialty: Specialty, urgency: str, question: str) -> Referral:
        return workflow.create_referral(
            clinician=clinician, patient=patient, specialty=specialty, urgency=urgency,
            question=question,
        )  # fmt: skip

    def send(referral: Referral, hours_ago: float) -> Referral:
        workflow.submit_referral(referral=referral, clinician=clinician)
        moment = timezone.now() - dt.timedelta(hours=hours_ago)
        Referral.objects.filter(pk=referral.pk).update(submitted_at=moment, extract_as_of=moment)
        referral.refresh_from_db()
        return referral

    def triage(referral: Referral) -> Referral:
        return workflow.triage_referral(
            referral=referral, coordinator=coordinator, specialist=specialist, priority=3,
            mode=Referral.Mode.ASYNC,
        )  # fmt: skip

    # The demo specialist's consulting hours: weekdays 09–13 and 14–17, in 30-minute slots.
    for weekday in range(5):
        for start, end in ((dt.time(9), dt.time(13)), (dt.time(14), dt.time(17))):
            AvailabilityRule.objects.create(
                specialist=specialist, weekday=weekday, start_time=start, end_time=end
            )
    # Open and assigned to the demo specialist, who can read the patients' records meanwhile:
    # Asel's with a video visit booked (doctor–patient), Gulzat's for a written opinion.
    asel_referral = triage(send(new(asel, cardiology, "routine", "АД 150–170/95–105 на двух "
                                    "препаратах. Подбор терапии? Нужна ли ЭхоКГ?"), 30))  # fmt: skip
    tomorrow = timezone.now() + dt.timedelta(days=1)
    slot = free_slots(specialist=specialist, start=tomorrow, end=tomorrow + dt.timedelta(days=7))[0]
    book_appointment(referral=asel_referral, booked_by=coordinator, starts_at=slot.starts_at,
                     kind=Appointment.Kind.DOCTOR_PATIENT)  # fmt: skip
    gulzat = patients["12802199100654"]
    other_clinician = User.objects.get(email="clinician2@demo.kg")
    gulzat_referral = workflow.create_referral(
        clinician=other_clinician, patient=gulzat, specialty=cardiology, urgency="routine",
        question="Сердцебиение и перебои в работе сердца после нагрузки. ЭКГ прилагается.",
    )  # fmt: skip
    workflow.submit_referral(referral=gulzat_referral, clinician=other_clinician)
    triage(gulzat_referral)
    # Nurlan's urgent one is being discussed right now, clinician to specialist.
    nurlan_now = triage(send(new(nurlan, cardiology, "urgent", "Боли в груди ночью, на ЭКГ "
                                 "новая блокада левой ножки пучка Гиса?"), 1))  # fmt: skip
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    session = Appointment.objects.create(
        referral=nurlan_now, specialist=specialist, kind=Appointment.Kind.DOCTOR_DOCTOR,
        starts_at=start, ends_at=start + dt.timedelta(minutes=30), booked_by=coordinator,
    )  # fmt: skip
    for who, role in ((specialist, "specialist"), (clinician, "clinician")):
        session.participants.create(user=who, role=role, name=who.full_name, starts_at=start)
    workflow.move_referral(referral=nurlan_now, to=Referral.Status.SCHEDULED, actor=coordinator)
    nurlan_now.save(update_fields=["status"])
    start_session(appointment=session, specialist=specialist)
    # Waiting for triage: one urgent and overdue, one routine.
    send(new(nurlan, cardiology, "urgent", "Давящие боли за грудиной при ходьбе 200 м, "
             "появились неделю назад. ЭКГ прилагается. Нестабильная стенокардия?"), 3)  # fmt: skip
    send(new(maria, pulmonology, "routine", "ХОБЛ, нарастает одышка, SpO2 93%. Коррекция "
             "ингаляционной терапии?"), 5)  # fmt: skip
    # A draft, a declined and a cancelled one.
    new(maria, cardiology, "routine", "Отёки голеней к вечеру.")
    declined = send(new(asel, pulmonology, "routine", "Кашель после ОРВИ 3 недели."), 200)
    workflow.decline_referral(referral=declined, coordinator=coordinator,
                              reason="Лечение по протоколу на уровне ЦСМ; при сохранении "
                                     "кашеля > 8 недель — повторно.")  # fmt: skip
    cancelled = new(nurlan, pulmonology, "routine", "Одышка.")
    workflow.cancel_referral(referral=cancelled, clinician=clinician,
                             reason="Пациент уехал в Бишкек.")  # fmt: skip
    # Answered: a report signed (to read) and one closed.
    for closed in (False, True):
        referral = triage(send(new(nurlan, cardiology, "routine",
                                   "ИБС, контроль терапии после стентирования."), 400))  # fmt: skip
        workflow.save_report(
            referral=referral, specialist=specialist,
            findings="Стенокардия напряжения ФК II. ЭКГ без острой ишемии.",
            diagnosis_code="I20.8", diagnosis_text="Стабильная стенокардия напряжения",
            recommendations="Продолжить аторвастатин 20 мг, добавить бисопролол 2,5 мг.",
            follow_up="Контроль через 3 месяца",
        )  # fmt: skip
        workflow.sign_report(referral=referral, specialist=specialist)
        if closed:
            workflow.close_referral(referral=referral, clinician=clinician)
