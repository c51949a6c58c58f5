"""The referral workflow, through the pages its users click, and the rules of every move."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts import access
from accounts.models import AuditEvent, Membership, Specialty, User
from consults.models import Referral
from consults.services import referrals as workflow
from ehr.models import Document, Patient
from tests.conftest import logged_in_client
from tests.factories.accounts import member

pytestmark = pytest.mark.django_db
BISHKEK = ZoneInfo("Asia/Bishkek")


@pytest.fixture
def cardiology(db: None) -> Specialty:
    return Specialty.objects.get(code="cardiology")


@pytest.fixture
def cardiologist(specialist: User, cardiology: Specialty) -> User:
    specialist.memberships.get().specialties.add(cardiology)
    return specialist


def submitted(clinician: User, patient: Patient, cardiology: Specialty, **fields) -> Referral:
    referral = workflow.create_referral(
        clinician=clinician, patient=patient, specialty=cardiology,
        urgency=fields.get("urgency", "routine"), question="Chest pain on exertion. ECG?",
    )  # fmt: skip
    return workflow.submit_referral(referral=referral, clinician=clinician)


def triaged(referral: Referral, coordinator: User, cardiologist: User, mode="async") -> Referral:
    return workflow.triage_referral(
        referral=referral, coordinator=coordinator, specialist=cardiologist, priority=2, mode=mode
    )


def test_clinician_sends_a_referral_from_the_patients_record(
    clinician: User, patient: Patient, cardiology: Specialty
):
    client = logged_in_client(clinician)

    response = client.post(
        f"/consults/new/{patient.pk}/",
        {
            "specialty": cardiology.pk,
            "urgency": "urgent",
            "question": "Syncope twice",
            "submit": "",
        },
    )

    referral = Referral.objects.get()
    assert response.status_code == 302
    assert referral.status == "submitted"
    assert referral.extract_as_of is not None
    assert referral.region == patient.organization.region
    assert [e.to_status for e in referral.events.all()] == ["draft", "submitted"]
    assert "Syncope twice" in client.get(f"/consults/{referral.pk}/").content.decode()


def test_a_draft_waits_until_sent_and_coordinators_do_not_see_it(
    clinician: User, coordinator: User, patient: Patient, cardiology: Specialty
):
    logged_in_client(clinician).post(
        f"/consults/new/{patient.pk}/",
        {"specialty": cardiology.pk, "urgency": "routine", "question": "Murmur", "draft": ""},
    )
    referral = Referral.objects.get()

    assert referral.status == "draft"
    assert logged_in_client(coordinator).get(f"/consults/{referral.pk}/").status_code == 404
    logged_in_client(clinician).post(f"/consults/{referral.pk}/submit/")
    referral.refresh_from_db()
    assert referral.status == "submitted"


def test_clinician_of_another_clinic_cannot_refer_or_see(
    other_clinician: User, patient: Patient, clinician: User, cardiology: Specialty
):
    referral = submitted(clinician, patient, cardiology)
    client = logged_in_client(other_clinician)

    assert client.get(f"/consults/new/{patient.pk}/").status_code == 404
    assert client.get(f"/consults/{referral.pk}/").status_code == 404


def test_documents_of_another_patient_cannot_be_attached(
    clinician: User, patient: Patient, other_patient: Patient, cardiology: Specialty
):
    foreign = Document.objects.create(
        patient=other_patient, title="x", content_type="a", sha256="0"
    )

    with pytest.raises(ValidationError):
        workflow.create_referral(
            clinician=clinician, patient=patient, specialty=cardiology, urgency="routine",
            question="q", documents=[foreign],
        )  # fmt: skip


def test_triage_queue_puts_the_most_urgent_first_then_the_longest_waiting(
    clinician: User, coordinator: User, patient: Patient, cardiology: Specialty, time_machine
):
    time_machine.move_to(dt.datetime(2026, 11, 23, 9, 0, tzinfo=BISHKEK))
    routine_old = submitted(clinician, patient, cardiology)
    time_machine.move_to(dt.datetime(2026, 11, 23, 10, 0, tzinfo=BISHKEK))
    urgent = submitted(clinician, patient, cardiology, urgency="urgent")
    emergency = submitted(clinician, patient, cardiology, urgency="emergency")

    page = logged_in_client(coordinator).get("/consults/triage/").content.decode()

    positions = [page.index(f"#{r.pk} ") for r in (emergency, urgent, routine_old)]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("urgency", "submitted_at", "checked_at", "overdue"),
    [
        ("urgent", (2026, 11, 23, 9, 0), (2026, 11, 23, 10, 59), False),
        ("urgent", (2026, 11, 23, 9, 0), (2026, 11, 23, 11, 1), True),
        ("emergency", (2026, 11, 23, 9, 0), (2026, 11, 23, 11, 1), True),
        # Routine: two working days. Friday → Tuesday, over the weekend.
        ("routine", (2026, 11, 27, 9, 0), (2026, 11, 30, 18, 0), False),
        ("routine", (2026, 11, 27, 9, 0), (2026, 12, 1, 9, 1), True),
    ],
)
def test_untriaged_referrals_become_overdue(
    clinician, coordinator, patient, cardiology, time_machine, urgency, submitted_at, checked_at,
    overdue,
):  # fmt: skip
    time_machine.move_to(dt.datetime(*submitted_at, tzinfo=BISHKEK))
    referral = submitted(clinician, patient, cardiology, urgency=urgency)
    time_machine.move_to(dt.datetime(*checked_at, tzinfo=BISHKEK))

    page = logged_in_client(coordinator).get("/consults/triage/").content.decode()

    assert f"#{referral.pk} " in page
    assert ("overdue" in page) is overdue


def test_coordinator_of_another_region_neither_sees_nor_triages(
    clinician, talas_coordinator, patient, cardiology, cardiologist
):
    referral = submitted(clinician, patient, cardiology)

    assert (
        f"#{referral.pk} "
        not in logged_in_client(talas_coordinator).get("/consults/triage/").content.decode()
    )
    with pytest.raises(PermissionDenied):
        triaged(referral, talas_coordinator, cardiologist)


def test_triage_assigns_only_a_specialist_of_that_specialty(
    clinician, coordinator, patient, cardiology, hospital
):
    referral = submitted(clinician, patient, cardiology)
    neurologist = member(hospital, Membership.Role.SPECIALIST, email="neuro@example.kg")

    with pytest.raises(ValidationError, match="not a specialist in"):
        triaged(referral, coordinator, neurologist)


def test_specialist_reads_the_record_while_the_consult_is_open_and_not_after(
    clinician, coordinator, patient, cardiology, cardiologist
):
    referral = submitted(clinician, patient, cardiology)
    assert not access.can(cardiologist, "view", patient)

    triaged(referral, coordinator, cardiologist)
    assert logged_in_client(cardiologist).get(f"/patients/{patient.pk}/").status_code == 200
    workflow.save_report(
        referral=referral,
        specialist=cardiologist,
        findings="Stable angina",
        diagnosis_code="I20.8",
        diagnosis_text="Stable angina",
        recommendations="Bisoprolol 2.5 mg",
        follow_up="3 months",
    )
    workflow.sign_report(referral=referral, specialist=cardiologist)
    assert access.can(cardiologist, "view", patient)
    workflow.close_referral(referral=referral, clinician=clinician)

    assert logged_in_client(cardiologist).get(f"/patients/{patient.pk}/").status_code == 404


def test_a_written_opinion_is_signed_into_the_record_and_the_clinician_told(
    clinician, coordinator, patient, cardiology, cardiologist, mailoutbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    referral = triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist)
    client = logged_in_client(cardiologist)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
        f"/consults/{referral.pk}/report/",
            {"findings": "Sinus rhythm, LVH", "diagnosis_code": "i11.9",
             "diagnosis_text": "Hypertensive heart disease", "recommendations": "Continue ACE-I",
             "follow_up": "", "sign": ""},
        )  # fmt: skip

    referral.refresh_from_db()
    assert response.status_code == 302
    assert referral.status == "report_signed"
    document = referral.report.document
    assert document.patient == patient
    assert document.kind == "report"
    assert document.file.read().startswith(b"%PDF-")
    assert [m.to for m in mailoutbox] == [[clinician.email]]
    assert patient.full_name not in mailoutbox[0].body
    record = logged_in_client(clinician).get(f"/patients/{patient.pk}/").content.decode()
    assert document.title in record


def test_a_signed_report_cannot_be_changed(
    clinician, coordinator, patient, cardiology, cardiologist
):
    referral = triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist)
    fields = {
        "findings": "f",
        "diagnosis_code": "I10",
        "diagnosis_text": "d",
        "recommendations": "r",
    }
    workflow.save_report(referral=referral, specialist=cardiologist, **fields)
    workflow.sign_report(referral=referral, specialist=cardiologist)

    with pytest.raises(ValidationError):
        workflow.save_report(referral=referral, specialist=cardiologist, **fields)


@pytest.mark.parametrize(
    ("move", "status_before"),
    [
        ("submit", "submitted"),
        ("close", "submitted"),
        ("sign", "triaged"),  # nothing written yet
        ("triage", "triaged"),
        ("cancel", "closed"),
    ],
)
def test_moves_that_make_no_sense_are_refused_with_a_reason(
    clinician, coordinator, patient, cardiology, cardiologist, move, status_before
):
    referral = submitted(clinician, patient, cardiology)
    if status_before in ("triaged", "closed"):
        triaged(referral, coordinator, cardiologist)
    if status_before == "closed":
        fields = {"findings": "f", "diagnosis_code": "I10", "diagnosis_text": "d",
                  "recommendations": "r"}  # fmt: skip
        workflow.save_report(referral=referral, specialist=cardiologist, **fields)
        workflow.sign_report(referral=referral, specialist=cardiologist)
        workflow.close_referral(referral=referral, clinician=clinician)
    moves = {
        "submit": lambda: workflow.submit_referral(referral=referral, clinician=clinician),
        "close": lambda: workflow.close_referral(referral=referral, clinician=clinician),
        "sign": lambda: workflow.sign_report(referral=referral, specialist=cardiologist),
        "triage": lambda: triaged(referral, coordinator, cardiologist),
        "cancel": lambda: workflow.cancel_referral(
            referral=referral, clinician=clinician, reason="no longer needed"
        ),
    }

    with pytest.raises(ValidationError):
        moves[move]()
    referral.refresh_from_db()
    assert referral.status == status_before


def test_decline_and_cancel_need_a_reason_and_are_in_the_history(
    clinician, coordinator, patient, cardiology
):
    first = submitted(clinician, patient, cardiology)
    second = submitted(clinician, patient, cardiology)

    refused = logged_in_client(coordinator).post(f"/consults/{first.pk}/decline/", {"reason": ""})
    logged_in_client(coordinator).post(
        f"/consults/{first.pk}/decline/", {"reason": "Treat locally: see protocol"}
    )
    logged_in_client(clinician).post(
        f"/consults/{second.pk}/cancel/", {"reason": "Went to Bishkek"}
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert refused.status_code == 400
    assert first.status == "declined"
    assert first.events.last().note == "Treat locally: see protocol"
    assert second.status == "cancelled"


def test_only_the_assigned_specialist_writes_the_report(
    clinician, coordinator, patient, cardiology, cardiologist, hospital
):
    referral = triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist)
    colleague = member(hospital, Membership.Role.SPECIALIST, email="colleague@example.kg")

    with pytest.raises(PermissionDenied):
        workflow.save_report(
            referral=referral,
            specialist=colleague,
            findings="x",
            diagnosis_code="I10",
            diagnosis_text="x",
            recommendations="x",
        )
    assert logged_in_client(colleague).get(f"/consults/{referral.pk}/").status_code == 404


def test_patient_follows_their_referral_but_cannot_move_it(
    clinician, patient_user, patient, cardiology
):
    referral = submitted(clinician, patient, cardiology)
    client = logged_in_client(patient_user)

    assert client.get(f"/consults/{referral.pk}/").status_code == 200
    with pytest.raises(PermissionDenied):
        workflow.cancel_referral(referral=referral, clinician=patient_user, reason="x")


def test_every_move_is_audited(clinician, coordinator, patient, cardiology, cardiologist):
    triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist)

    statuses = list(
        AuditEvent.objects.filter(object_type="consults.referral", action="update")
        .order_by("id")
        .values_list("detail__status", flat=True)
    )
    assert statuses == ["submitted", "triaged"]


def test_the_report_of_a_scheduled_consult_is_signed_after_the_session(
    clinician, coordinator, patient, cardiology, cardiologist, time_machine
):
    from consults.models import Appointment

    time_machine.move_to(dt.datetime(2026, 11, 23, 8, 0, tzinfo=BISHKEK))
    referral = triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist, "live")
    appointment = Appointment.objects.create(
        referral=referral, specialist=cardiologist, kind="doctor_doctor", booked_by=coordinator,
        starts_at=dt.datetime(2026, 11, 23, 10, 0, tzinfo=BISHKEK),
        ends_at=dt.datetime(2026, 11, 23, 10, 30, tzinfo=BISHKEK),
    )  # fmt: skip
    workflow.move_referral(referral=referral, to="scheduled", actor=coordinator)
    referral.save()
    time_machine.move_to(dt.datetime(2026, 11, 23, 11, 0, tzinfo=BISHKEK))

    workflow.save_report(referral=referral, specialist=cardiologist, findings="f",
                         diagnosis_code="I10", diagnosis_text="d", recommendations="r")  # fmt: skip
    workflow.sign_report(referral=referral, specialist=cardiologist)

    referral.refresh_from_db()
    appointment.refresh_from_db()
    assert referral.status == "report_signed"
    assert appointment.status == "completed"


def test_the_specialist_starts_the_session_in_its_window_only(
    clinician, coordinator, patient, cardiology, cardiologist, time_machine
):
    from consults.models import Appointment
    from consults.services.sessions import start_session

    time_machine.move_to(dt.datetime(2026, 11, 23, 8, 0, tzinfo=BISHKEK))
    referral = triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist, "live")
    appointment = Appointment.objects.create(
        referral=referral, specialist=cardiologist, kind="doctor_doctor", booked_by=coordinator,
        starts_at=dt.datetime(2026, 11, 23, 10, 0, tzinfo=BISHKEK),
        ends_at=dt.datetime(2026, 11, 23, 10, 30, tzinfo=BISHKEK),
    )  # fmt: skip
    workflow.move_referral(referral=referral, to="scheduled", actor=coordinator)
    referral.save()

    with pytest.raises(ValidationError):
        start_session(appointment=appointment, specialist=cardiologist)  # two hours early
    time_machine.move_to(dt.datetime(2026, 11, 23, 9, 50, tzinfo=BISHKEK))
    with pytest.raises(PermissionDenied):
        start_session(appointment=appointment, specialist=clinician)
    response = logged_in_client(cardiologist).post(
        f"/consults/appointments/{appointment.pk}/start/"
    )

    referral.refresh_from_db()
    assert response.status_code == 302
    assert referral.status == "in_session"
    workflow.save_report(referral=referral, specialist=cardiologist, findings="f",
                         diagnosis_code="I10", diagnosis_text="d", recommendations="r")  # fmt: skip
    workflow.sign_report(referral=referral, specialist=cardiologist)
    referral.refresh_from_db()
    assert referral.status == "report_signed"


def test_patient_sees_their_coming_visits_on_the_dashboard(
    clinician, coordinator, patient_user, patient, cardiology, cardiologist, time_machine
):
    from consults.models import Appointment

    time_machine.move_to(dt.datetime(2026, 11, 23, 8, 0, tzinfo=BISHKEK))
    referral = triaged(submitted(clinician, patient, cardiology), coordinator, cardiologist, "live")
    start = dt.datetime(2026, 11, 24, 10, 0, tzinfo=BISHKEK)
    appointment = Appointment.objects.create(
        referral=referral, specialist=cardiologist, kind="doctor_patient", booked_by=coordinator,
        starts_at=start, ends_at=start + dt.timedelta(minutes=30),
    )  # fmt: skip
    appointment.participants.create(user=patient_user, role="patient", name="Asel",
                                    starts_at=start)  # fmt: skip

    page = logged_in_client(patient_user).get("/").content.decode()

    assert "24.11.2026 10:00" in page
    assert str(cardiologist) in page


def test_triage_queue_filters_by_clinic_and_specialty(
    clinician, other_clinician, coordinator, patient, other_patient, cardiology, other_clinic
):
    from_at_bashy = submitted(clinician, patient, cardiology)
    from_kara_kujur = submitted(other_clinician, other_patient, cardiology)
    client = logged_in_client(coordinator)

    by_clinic = client.get("/consults/triage/", {"organization": other_clinic.pk}).content.decode()
    by_specialty = client.get(
        "/consults/triage/", {"specialty": Specialty.objects.get(code="neurology").pk}
    ).content.decode()

    assert f"#{from_kara_kujur.pk} " in by_clinic
    assert f"#{from_at_bashy.pk} " not in by_clinic
    assert f"#{from_at_bashy.pk} " not in by_specialty
