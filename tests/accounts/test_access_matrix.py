"""The authorization matrix: every role × every object kind × allowed and denied.

Each row is checked three ways: `can` for one object, `scope` for lists (the two must agree),
and, for patients and the audit log, through the page and the API a user really calls.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import access
from accounts.models import AuditEvent, Membership, Region
from ehr.models import Document, LabMessage, Observation
from tests.conftest import logged_in_client

pytestmark = pytest.mark.django_db

# (who, action, on what, allowed)
MATRIX = [
    # Patients: own record for the patient; own organization for the clinician; the region
    # for the coordinator (read only); nothing for administrators; specialists only through
    # consults (none yet).
    ("patient_user", "view", "patient", True),
    ("patient_user", "change", "patient", False),
    ("patient_user", "view", "other_patient", False),
    ("clinician", "view", "patient", True),
    ("clinician", "change", "patient", True),
    ("clinician", "view", "other_patient", False),
    ("clinician", "change", "other_patient", False),
    ("other_clinician", "view", "patient", False),
    ("other_clinician", "view", "other_patient", True),
    ("specialist", "view", "patient", False),
    ("coordinator", "view", "patient", True),
    ("coordinator", "view", "other_patient", True),
    ("coordinator", "change", "patient", False),
    ("coordinator", "view", "talas_patient", False),
    ("talas_coordinator", "view", "patient", False),
    ("talas_coordinator", "view", "talas_patient", True),
    ("admin_user", "view", "patient", False),
    ("admin_user", "change", "patient", False),
    ("patient_user", "view_access_log", "patient", True),
    ("clinician", "view_access_log", "patient", False),
    # Entries of the record follow their patient.
    ("clinician", "view", "observation", True),
    ("clinician", "change", "observation", True),
    ("other_clinician", "view", "observation", False),
    ("patient_user", "view", "observation", True),
    ("patient_user", "change", "observation", False),
    ("coordinator", "view", "observation", True),
    ("coordinator", "change", "observation", False),
    ("talas_coordinator", "view", "observation", False),
    ("admin_user", "view", "observation", False),
    ("specialist", "view", "observation", False),
    ("clinician", "view", "document", True),
    ("other_clinician", "view", "document", False),
    ("patient_user", "keep_diary", "patient", True),
    ("clinician", "keep_diary", "patient", False),
    # Lab messages: matched ones follow the patient; unmatched ones go to coordinators.
    ("clinician", "view", "matched_lab_message", True),
    ("other_clinician", "view", "matched_lab_message", False),
    ("clinician", "view", "unmatched_lab_message", False),
    ("coordinator", "view", "unmatched_lab_message", True),
    ("admin_user", "view", "unmatched_lab_message", False),
    ("patient_user", "view", "matched_lab_message", False),
    # Organizations: a directory for staff, own clinics for patients, managed by admins.
    ("patient_user", "view", "clinic", True),
    ("patient_user", "view", "other_clinic", False),
    ("clinician", "view", "other_clinic", True),
    ("specialist", "view", "talas_clinic", True),
    ("clinician", "change", "clinic", False),
    ("coordinator", "change", "clinic", False),
    ("admin_user", "change", "talas_clinic", True),
    ("admin_user", "delete", "clinic", True),
    # Users: oneself; colleagues of the region for the coordinator; everyone for admins.
    ("clinician", "view", "clinician", True),
    ("clinician", "change", "clinician", True),
    ("clinician", "view", "other_clinician", False),
    ("clinician", "change", "other_clinician", False),
    ("patient_user", "view", "clinician", False),
    ("coordinator", "view", "clinician", True),
    ("coordinator", "change", "clinician", False),
    ("talas_coordinator", "view", "clinician", False),
    ("admin_user", "view", "patient_user", True),
    ("admin_user", "change", "clinician", True),
    # Memberships: one's own; the region's for coordinators; managed by admins.
    ("clinician", "view", "clinician_membership", True),
    ("clinician", "change", "clinician_membership", False),
    ("other_clinician", "view", "clinician_membership", False),
    ("coordinator", "view", "clinician_membership", True),
    ("talas_coordinator", "view", "clinician_membership", False),
    ("admin_user", "change", "clinician_membership", True),
    # The audit log: the region's for coordinators, all for admins, the patient's own.
    ("coordinator", "view", "naryn_event", True),
    ("coordinator", "export", "naryn_event", True),
    ("talas_coordinator", "view", "naryn_event", False),
    ("talas_coordinator", "export", "naryn_event", False),
    ("admin_user", "export", "naryn_event", True),
    ("patient_user", "view", "naryn_event", True),
    ("patient_user", "export", "naryn_event", False),
    ("patient_user", "view", "other_patient_event", False),
    ("clinician", "view", "naryn_event", False),
    ("specialist", "view", "naryn_event", False),
]


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    patient_user: Any,
    patient: Any,
    other_patient: Any,
    talas_patient: Any,
    clinician: Any,
    other_clinician: Any,
    specialist: Any,
    coordinator: Any,
    talas_coordinator: Any,
    admin_user: Any,
    clinic: Any,
    other_clinic: Any,
    talas_clinic: Any,
) -> dict[str, Any]:
    names = [
        "patient_user", "patient", "other_patient", "talas_patient", "clinician",
        "other_clinician", "specialist", "coordinator", "talas_coordinator", "admin_user",
        "clinic", "other_clinic", "talas_clinic",
    ]  # fmt: skip
    objects = {name: request.getfixturevalue(name) for name in names}
    objects["clinician_membership"] = Membership.objects.get(user=clinician)
    objects["observation"] = Observation.objects.create(
        patient=patient, category="vital-signs", source="clinician", display="Pulse",
        value=72, unit="/min", effective_at=timezone.now(),
    )  # fmt: skip
    objects["document"] = Document.objects.create(
        patient=patient, title="Scan", content_type="application/pdf", sha256="0" * 64
    )
    objects["matched_lab_message"] = LabMessage.objects.create(
        channel="http", raw="MSH|...", status="accepted", patient=patient
    )
    objects["unmatched_lab_message"] = LabMessage.objects.create(
        channel="mllp", raw="MSH|...", status="unmatched"
    )
    objects["naryn_event"] = AuditEvent.objects.create(
        action="view", outcome="allowed", patient_id=patient.pk, region=Region.NARYN
    )
    objects["other_patient_event"] = AuditEvent.objects.create(
        action="view", outcome="allowed", patient_id=other_patient.pk, region=Region.NARYN
    )
    return objects


@pytest.mark.parametrize(("who", "action", "target", "allowed"), MATRIX)
def test_access_matrix(world: dict[str, Any], who: str, action: str, target: str, allowed: bool):
    user, obj = world[who], world[target]

    answer = access.can(user, action, obj)
    listed = access.scope(user, action, type(obj).objects.all()).filter(pk=obj.pk).exists()

    assert answer is allowed
    assert listed is allowed


def test_anonymous_and_inactive_users_may_do_nothing(world: dict[str, Any]):
    from django.contrib.auth.models import AnonymousUser

    clinician = world["clinician"]
    clinician.is_active = False
    clinician.save()

    assert not access.can(AnonymousUser(), "view", world["clinic"])
    assert not access.can(clinician, "view", world["patient"])


def test_an_action_without_a_policy_is_refused(world: dict[str, Any]):
    assert not access.can(world["clinician"], "teleport", world["patient"])


def test_deactivated_membership_closes_access(world: dict[str, Any]):
    membership = world["clinician_membership"]
    membership.is_active = False
    membership.save()

    assert not access.can(world["clinician"], "view", world["patient"])


@pytest.mark.parametrize(
    ("who", "target", "status"),
    [
        ("clinician", "patient", 200),
        ("patient_user", "patient", 200),
        ("coordinator", "patient", 200),
        ("other_clinician", "patient", 404),
        ("specialist", "patient", 404),
        ("admin_user", "patient", 404),
        ("talas_coordinator", "patient", 404),
    ],
)
def test_patient_page_and_api_follow_the_matrix(
    world: dict[str, Any], who: str, target: str, status: int
):
    from rest_framework.authtoken.models import Token

    user, patient = world[who], world[target]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")

    page = logged_in_client(user).get(f"/patients/{patient.pk}/")
    api_response = api.get(f"/api/v1/patients/{patient.pk}/")

    assert page.status_code == status
    assert api_response.status_code == status
    if status == 404:
        # A refusal looks exactly like a patient who does not exist: nothing leaks.
        assert patient.family_name.encode() not in page.content
        missing = logged_in_client(user).get("/patients/999999/")
        assert missing.status_code == 404


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("coordinator", 200),
        ("admin_user", 200),
        ("clinician", 403),
        ("specialist", 403),
        ("patient_user", 403),
    ],
)
def test_audit_log_page_and_export_follow_the_matrix(world: dict[str, Any], who: str, status: int):
    client = logged_in_client(world[who])

    assert client.get("/accounts/audit/").status_code == status
    assert client.get("/accounts/audit/export.csv").status_code == status
    assert client.get("/api/v1/audit-events/").status_code == status
