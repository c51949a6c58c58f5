"""Receiving ORU^R01 lab results: the service every channel (MLLP, HTTP) calls."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import hl7
import pytest

from accounts.models import AuditEvent
from ehr.models import LabMessage, Observation, Patient
from ehr.services.lab_results import receive_oru

BISHKEK = dt.timezone(dt.timedelta(hours=6))


def oru_message(
    *,
    pin: str,
    control_id: str = "MSG0001",
    filler: str = "F-100",
    separator: str = "\r",
    potassium: str = "4.1",
    status: str = "F",
) -> str:
    """An ORU^R01 as a lab in Naryn sends it: a lipid panel, a potassium and a urine colour."""
    segments = [
        f"MSH|^~\\&|LIS|NARYN-LAB|TELEMED|TELEMED|20250301101500||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||L-5531^^^NARYN-LAB^MR~{pin}^^^KG^NI||Mamytova^Asel||19900101|F",
        f"OBR|1|ORD-77|{filler}|24331-1^Lipid panel^LN|||20250301083000",
        f"OBX|1|NM|2093-3^Cholesterol total^LN||5.9|mmol/L|3.0-5.2|H|||{status}|||20250301090000",
        f"OBX|2|NM|2823-3^Potassium^LN||{potassium}|mmol/L|3.5-5.5|N|||{status}",
        f"OBX|3|ST|5778-6^Color of Urine^LN||straw||||||{status}",
    ]
    return separator.join(segments) + separator


def ack_of(ack: str) -> hl7.Message:
    return hl7.parse(ack)


def ack_reason(ack: str) -> str:
    """ERR-8, the reason for a person to read, unescaped."""
    message = ack_of(ack)
    return message.unescape(str(message.segment("ERR")(8)))


def test_results_become_laboratory_observations_with_values_units_ranges(patient: Patient):
    raw = oru_message(pin=patient.pin)

    lab_message, ack = receive_oru(raw=raw, channel="mllp", sender="127.0.0.1")

    assert str(ack_of(ack).segment("MSA")(1)) == "AA"
    assert str(ack_of(ack).segment("MSA")(2)) == "MSG0001"
    lab_message.refresh_from_db()
    assert lab_message.status == LabMessage.Status.ACCEPTED
    assert lab_message.raw == raw
    assert lab_message.patient == patient
    assert lab_message.observation_count == 3
    cholesterol, potassium, colour = Observation.objects.filter(patient=patient).order_by("code")
    assert cholesterol.code == "2093-3"
    assert cholesterol.display == "Cholesterol total"
    assert cholesterol.category == Observation.Category.LABORATORY
    assert cholesterol.source == Observation.Source.LAB
    assert cholesterol.value == Decimal("5.9")
    assert cholesterol.unit == "mmol/L"
    assert (cholesterol.reference_low, cholesterol.reference_high) == (Decimal(3), Decimal("5.2"))
    assert cholesterol.interpretation == "H"
    assert cholesterol.effective_at == dt.datetime(2025, 3, 1, 9, 0, tzinfo=BISHKEK)
    assert cholesterol.source_system == "LIS^NARYN-LAB"
    assert potassium.value == Decimal("4.1")
    assert potassium.interpretation == "N"
    # No OBX-14: the time the specimen was taken (OBR-7).
    assert potassium.effective_at == dt.datetime(2025, 3, 1, 8, 30, tzinfo=BISHKEK)
    assert colour.value is None
    assert colour.value_text == "straw"


def test_same_message_sent_twice_is_acknowledged_and_stored_once(patient: Patient):
    raw = oru_message(pin=patient.pin)
    receive_oru(raw=raw, channel="mllp", sender="127.0.0.1")

    second, ack = receive_oru(raw=raw, channel="mllp", sender="127.0.0.1")

    assert str(ack_of(ack).segment("MSA")(1)) == "AA"
    assert Observation.objects.filter(patient=patient).count() == 3
    assert second.observation_count == 0
    assert LabMessage.objects.count() == 2  # both receipts kept


def test_correction_updates_the_stored_result_instead_of_adding_one(patient: Patient):
    receive_oru(raw=oru_message(pin=patient.pin), channel="mllp", sender="lab")

    receive_oru(
        raw=oru_message(pin=patient.pin, control_id="MSG0002", potassium="3.2", status="C"),
        channel="mllp",
        sender="lab",
    )

    potassium = Observation.objects.get(patient=patient, code="2823-3")
    assert potassium.value == Decimal("3.2")
    assert Observation.objects.filter(patient=patient).count() == 3


def test_unknown_pin_is_answered_ae_with_reason_and_kept_unmatched(patient: Patient):
    raw = oru_message(pin="99999999999999")

    lab_message, ack = receive_oru(raw=raw, channel="mllp", sender="127.0.0.1")

    msa = ack_of(ack).segment("MSA")
    assert str(msa(1)) == "AE"
    assert "99999999999999" in str(msa(3))
    assert "204" in str(ack_of(ack).segment("ERR")(3))
    lab_message.refresh_from_db()
    assert lab_message.status == LabMessage.Status.UNMATCHED
    assert lab_message.patient is None
    assert "99999999999999" in lab_message.error
    assert not Observation.objects.exists()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("this is not HL7 at all \x00\x01", "MSH"),
        ("MSH|^~\\&|LIS|LAB|||20250301||ADT^A01|ADT7|P|2.5\rPID|1||12345678901234", "ADT^A01"),
        ("MSH|^~\\&|LIS|LAB|||20250301||ORU^R01|CUT1|P|2.5\rPID|1||1234567890", "OBX"),
        ("", "MSH"),
    ],
    ids=["garbage", "not-oru", "truncated", "empty"],
)
def test_unreadable_message_is_answered_ar_and_kept_rejected(db: None, raw: str, reason: str):
    lab_message, ack = receive_oru(raw=raw, channel="http", sender="lab@example.kg")

    assert str(ack_of(ack).segment("MSA")(1)) == "AR"
    assert reason in ack_reason(ack)
    lab_message.refresh_from_db()
    assert lab_message.status == LabMessage.Status.REJECTED
    assert reason in lab_message.error
    assert lab_message.raw == raw.replace("\x00", "\ufffd")


def test_rejected_message_keeps_the_senders_control_id_in_the_ack(db: None):
    raw = "MSH|^~\\&|LIS|LAB|||20250301||ADT^A01|ADT7|P|2.5\rPID|1||12345678901234"

    lab_message, ack = receive_oru(raw=raw, channel="mllp", sender="127.0.0.1")

    assert str(ack_of(ack).segment("MSA")(2)) == "ADT7"
    assert lab_message.control_id == "ADT7"


def test_line_feed_separated_message_is_read(patient: Patient):
    raw = oru_message(pin=patient.pin, separator="\r\n")

    _, ack = receive_oru(raw=raw, channel="http", sender="lab@example.kg")

    assert str(ack_of(ack).segment("MSA")(1)) == "AA"
    assert Observation.objects.filter(patient=patient).count() == 3


def test_each_stored_result_is_audited_with_the_sender_as_actor(patient: Patient):
    receive_oru(raw=oru_message(pin=patient.pin), channel="mllp", sender="10.1.2.3")

    events = AuditEvent.objects.filter(action=AuditEvent.Action.CREATE, patient_id=patient.pk)
    assert events.count() == 3
    event = events.first()
    assert event.actor_user_id is None
    assert event.actor_label == "10.1.2.3"
    assert event.object_type == "ehr.observation"
    assert event.region == patient.organization.region
