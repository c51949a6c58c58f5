"""A viewer's burst of frame reads through the web process: one audit event per burst, a
permission trusted for at most a minute, a frame the web process has not seen before served
at once (its kept database connection sees what others stored since)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydicom
import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import AuditEvent, Membership, Organization, User
from imaging.models import ReceivedFile
from imaging.selectors import BURST_DECISION_SECONDS, READ_BURST_SECONDS
from imaging.services.ingest import receive_file
from telemed.asgi import application
from tests.factories.imaging import ct_series, dicom_bytes, dicomweb_url
from tests.imaging.test_dicomweb_speedpath import _get

pytestmark = pytest.mark.django_db(transaction=True)


def _store(datasets: list[pydicom.Dataset], clinic: Organization, capture: Any) -> None:
    for ds in datasets:
        with capture(execute=True):
            receive_file(
                content=dicom_bytes(ds), source=ReceivedFile.Source.UPLOAD, organization=clinic
            )


def _frame(ds: pydicom.Dataset, token: str) -> int:
    status, _headers, _body = _get(
        application, dicomweb_url(ds) + "/frames/1/rendered", {"Authorization": f"Bearer {token}"}
    )
    return status


def _reads(outcome: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            outcome=outcome, action=AuditEvent.Action.VIEW, object_type="imaging.study"
        )
    )


def test_frames_stop_within_a_minute_of_losing_access_and_the_refusal_is_audited(
    clinic: Organization,
    clinician: User,
    django_capture_on_commit_callbacks: Any,
    time_machine: Any,
) -> None:
    series = ct_series(2, patient_id="P-LOSE", study_date="20260301", size=32)
    _store(series, clinic, django_capture_on_commit_callbacks)
    token = Token.objects.create(user=clinician).key
    time_machine.move_to(timezone.now(), tick=False)
    assert _frame(series[0], token) == 200

    Membership.objects.filter(user=clinician).update(is_active=False)
    time_machine.shift(dt.timedelta(seconds=BURST_DECISION_SECONDS + 1))

    assert _frame(series[1], token) == 404
    assert [event.actor_user_id for event in _reads(AuditEvent.Outcome.DENIED)] == [clinician.pk]


def test_a_burst_is_one_audit_event_and_a_later_burst_another(
    clinic: Organization,
    clinician: User,
    django_capture_on_commit_callbacks: Any,
    time_machine: Any,
) -> None:
    series = ct_series(3, patient_id="P-BURST", study_date="20260302", size=32)
    _store(series, clinic, django_capture_on_commit_callbacks)
    token = Token.objects.create(user=clinician).key
    time_machine.move_to(timezone.now(), tick=False)

    statuses = [_frame(ds, token) for ds in series]
    first_burst = _reads(AuditEvent.Outcome.ALLOWED)
    time_machine.shift(dt.timedelta(seconds=READ_BURST_SECONDS + 1))
    statuses.append(_frame(series[0], token))

    assert statuses == [200, 200, 200, 200]
    assert len(first_burst) == 1
    events = _reads(AuditEvent.Outcome.ALLOWED)
    assert len(events) == 2
    assert {event.detail["dicomweb"] for event in events} == {"rendered"}


def test_a_series_stored_after_earlier_reads_is_served_at_once(
    clinic: Organization, clinician: User, django_capture_on_commit_callbacks: Any
) -> None:
    token = Token.objects.create(user=clinician).key
    first = ct_series(1, patient_id="P-NEW", study_date="20260303", size=32)
    _store(first, clinic, django_capture_on_commit_callbacks)
    # Enough reads for every thread of the web process to hold a connection.
    assert {_frame(first[0], token) for _ in range(40)} == {200}

    later = ct_series(2, patient_id="P-NEW", study_date="20260304", size=32)
    _store(later, clinic, django_capture_on_commit_callbacks)

    assert [_frame(ds, token) for ds in later] == [200, 200]
