"""Reading ORU^R01 lab results and writing their acknowledgements (HL7 v2, python-hl7).

Knows nothing of the database or of HTTP: `parse_oru` turns the text of a message into plain
values, and raises `BadMessage` with a reason a lab's interface engineer can act on.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import hl7
from hl7.exceptions import ParseException

# Labs in Kyrgyzstan send local time, usually without an offset (HL7 leaves the zone optional).
LAB_TIME_ZONE = zoneinfo.ZoneInfo("Asia/Bishkek")
OUR_APPLICATION = "TELEMED"
PIN_PATTERN = re.compile(r"\d{14}")

# HL7 table 0357 (message error condition codes), for ERR-3.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNKNOWN_KEY_IDENTIFIER = "204"
APPLICATION_INTERNAL_ERROR = "207"
_ERROR_TEXT = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

# Model field lengths (ehr.models.Observation): longer values are cut, never refused.
_MAX_CODE, _MAX_DISPLAY, _MAX_UNIT, _MAX_SOURCE = 20, 200, 32, 200
_RANGE = re.compile(r"^\s*(-?\d+(?:[.,]\d+)?)\s*(?:-|–|\.\.)\s*(-?\d+(?:[.,]\d+)?)\s*$")
_UPPER_ONLY = re.compile(r"^\s*<=?\s*(-?\d+(?:[.,]\d+)?)\s*$")
_LOWER_ONLY = re.compile(r"^\s*>=?\s*(-?\d+(?:[.,]\d+)?)\s*$")


class BadMessage(ValueError):
    """The message cannot be read as an ORU^R01; `error_code` goes to ERR-3."""

    def __init__(self, reason: str, error_code: str = SEGMENT_SEQUENCE_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code


@dataclass(frozen=True)
class LabResult:
    """One OBX, ready to become an Observation."""

    source_id: str
    code: str
    display: str
    value: Decimal | None
    value_text: str
    unit: str
    reference_low: Decimal | None
    reference_high: Decimal | None
    interpretation: str
    effective_at: dt.datetime
    is_correction: bool


@dataclass(frozen=True)
class OruMessage:
    control_id: str
    source_system: str
    pins: list[str]
    results: list[LabResult] = field(default_factory=list)


def normalize_segments(raw: str) -> str:
    """HL7 separates segments with CR; senders over HTTP or from files often use LF or CRLF."""
    return raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r\n\x0b\x1c \t")


def control_id_of(raw: str) -> str:
    """MSH-10 read without the parser, so that even a message it refuses is acknowledged
    with the sender's control id (and can be found again in the review queue)."""
    text = normalize_segments(raw)
    if not text.startswith("MSH") or len(text) < 4:
        return ""
    fields = text.split("\r", 1)[0].split(text[3])
    return fields[9][:100] if len(fields) > 9 else ""


def _field(message: hl7.Message, segment: hl7.Segment, number: int) -> list[list[str]]:
    """Field `number` as repetitions of components, unescaped; [] when absent."""
    if number >= len(segment):
        return []
    _, _, repetition_sep, component_sep, _ = message.separators
    text = str(segment[number])
    if not text:
        return []
    return [
        [message.unescape(component) for component in repetition.split(component_sep)]
        for repetition in text.split(repetition_sep)
    ]


def _first(message: hl7.Message, segment: hl7.Segment, number: int, component: int = 1) -> str:
    repetitions = _field(message, segment, number)
    if not repetitions or len(repetitions[0]) < component:
        return ""
    return repetitions[0][component - 1].strip()


def parse_timestamp(value: str) -> dt.datetime | None:
    """An HL7 DTM; without an offset it is local time in Bishkek. None if malformed."""
    if not value:
        return None
    try:
        moment = hl7.parse_datetime(value)
    except (ValueError, TypeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LAB_TIME_ZONE)
    return moment


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    # Observation keeps 4 decimal places and 12 digits in all.
    number = number.quantize(Decimal("0.0001")) if number.as_tuple().exponent < -4 else number
    return number if abs(number) < Decimal("1e8") else None


def parse_reference_range(text: str) -> tuple[Decimal | None, Decimal | None]:
    """ "3.5-5.5", "<5" or ">10" (OBX-7); anything else is no range rather than an error."""
    if match := _RANGE.match(text):
        return _decimal(match[1]), _decimal(match[2])
    if match := _UPPER_ONLY.match(text):
        return None, _decimal(match[1])
    if match := _LOWER_ONLY.match(text):
        return _decimal(match[1]), None
    return None, None


def _interpretation(text: str) -> str:
    # Table 0078 also has HH/LL (critical) and AA; the record keeps H, L, N and A.
    flag = text.strip().upper()[:1]
    return flag if flag in {"H", "L", "N", "A"} else ""


def _parse_message(text: str) -> hl7.Message:
    if not text.startswith("MSH"):
        raise BadMessage("The message does not begin with an MSH segment.")
    try:
        return hl7.parse(text)
    except (ParseException, IndexError, ValueError) as error:
        raise BadMessage(f"The message cannot be parsed: {error}") from error


def parse_oru(raw: str) -> OruMessage:
    """The patient identifiers and results of an ORU^R01 (one patient per message)."""
    text = normalize_segments(raw)
    message = _parse_message(text)
    msh = message.segment("MSH")
    message_type = _field(message, msh, 9)
    kind = message_type[0] if message_type else []
    if kind[:2] != ["ORU", "R01"]:
        shown = "^".join(kind) or "nothing"
        raise BadMessage(
            f"Only ORU^R01 lab results are accepted here, not {shown} (MSH-9).",
            UNSUPPORTED_MESSAGE_TYPE,
        )
    control_id = _first(message, msh, 10)
    if not control_id:
        raise BadMessage("MSH-10 (message control id) is empty.", REQUIRED_FIELD_MISSING)
    source_system = f"{_first(message, msh, 3)}^{_first(message, msh, 4)}"[:_MAX_SOURCE]
    message_time = parse_timestamp(_first(message, msh, 7))

    segments = [segment for segment in message if str(segment[0])]
    names = [str(segment[0]) for segment in segments]
    if names.count("PID") != 1:
        raise BadMessage(
            "Exactly one PID segment is expected (one patient per message).",
            SEGMENT_SEQUENCE_ERROR,
        )
    pid = segments[names.index("PID")]
    pins = sorted(
        {
            component.strip()
            for repetition in _field(message, pid, 3)
            for component in repetition
            if PIN_PATTERN.fullmatch(component.strip())
        }
    )
    if "OBX" not in names:
        raise BadMessage("The message has no OBX segment: no result to store.")

    results: list[LabResult] = []
    order: hl7.Segment | None = None
    order_number = 0
    for name, segment in zip(names, segments, strict=True):
        if name == "OBR":
            order, order_number = segment, order_number + 1
        elif name == "OBX":
            results.append(
                _parse_result(
                    message,
                    segment,
                    order=order,
                    order_number=order_number,
                    control_id=control_id,
                    fallback_time=message_time,
                )
            )
    return OruMessage(
        control_id=control_id[:100], source_system=source_system, pins=pins, results=results
    )


def _parse_result(
    message: hl7.Message,
    obx: hl7.Segment,
    *,
    order: hl7.Segment | None,
    order_number: int,
    control_id: str,
    fallback_time: dt.datetime | None,
) -> LabResult:
    set_id = _first(message, obx, 1)
    value_type = _first(message, obx, 2).upper()
    code = _first(message, obx, 3, 1)
    display = _first(message, obx, 3, 2) or code
    if not code and not display:
        raise BadMessage(f"OBX {set_id or '?'}: OBX-3 (what was measured) is empty.",
                         REQUIRED_FIELD_MISSING)  # fmt: skip
    values = [
        "^".join(part for part in repetition if part) for repetition in _field(message, obx, 5)
    ]
    value_text = "\n".join(values).strip()
    # A numeric result that is not a number ("<0.5", "see note") is kept as text, not lost.
    value = _decimal(value_text) if value_type == "NM" and value_text else None
    low, high = parse_reference_range(_first(message, obx, 7))
    effective_at = (
        parse_timestamp(_first(message, obx, 14))
        or (parse_timestamp(_first(message, order, 7)) if order is not None else None)
        or fallback_time
    )
    if effective_at is None:
        raise BadMessage(
            f"OBX {set_id or '?'}: no usable time in OBX-14, OBR-7 or MSH-7.", DATA_TYPE_ERROR
        )
    filler = _first(message, order, 3) if order is not None else ""
    # The key that makes a re-sent result land on the same row: the lab's own order number
    # when it gives one (stable across corrections), else this message's control id.
    key = f"{filler}|{set_id}|{code}" if filler else f"{control_id}|{order_number}|{set_id}|{code}"
    return LabResult(
        source_id=key[:_MAX_SOURCE],
        code=code[:_MAX_CODE],
        display=display[:_MAX_DISPLAY],
        value=value,
        value_text="" if value is not None else value_text,
        unit=_first(message, obx, 6, 1)[:_MAX_UNIT],
        reference_low=low,
        reference_high=high,
        interpretation=_interpretation(_first(message, obx, 8)),
        effective_at=effective_at,
        is_correction=_first(message, obx, 11).upper() == "C",
    )


# --- Acknowledgements ------------------------------------------------------------------------


def _now_stamp() -> str:
    return dt.datetime.now(LAB_TIME_ZONE).strftime("%Y%m%d%H%M%S%z")


def build_ack(raw: str, code: str, *, reason: str = "", error_code: str = "") -> str:
    """The original-mode ACK (MSH + MSA, and ERR with the reason when not AA), CR-separated.

    Built with python-hl7's `create_ack` when the sender's MSH can be read, by hand otherwise,
    so that even garbage gets an AR its sender can log."""
    text = normalize_segments(raw)
    ack_text = ""
    escape = _plain_escape
    if text.startswith("MSH"):
        try:
            message = hl7.parse(text)
            ack = message.create_ack(
                code,
                message_id=uuid.uuid4().hex[:20],
                application=OUR_APPLICATION,
                facility=OUR_APPLICATION,
            )
            # python-hl7 writes MSH-7 in UTC without saying so; give the offset explicitly.
            ack.segment("MSH").assign_field(_now_stamp(), 7)
            if reason:
                ack.segment("MSA").assign_field(message.escape(reason[:200]), 3)
            ack_text = str(ack).rstrip("\r")
            escape = message.escape
        except (ParseException, IndexError, ValueError, KeyError, TypeError):
            ack_text = ""
    if not ack_text:
        control_id = _plain_escape(control_id_of(raw))
        msa = f"MSA|{code}|{control_id}"
        if reason:
            msa += f"|{_plain_escape(reason[:200])}"
        ack_text = (
            f"MSH|^~\\&|{OUR_APPLICATION}|{OUR_APPLICATION}|||{_now_stamp()}||ACK|"
            f"{uuid.uuid4().hex[:20]}|P|2.5\r{msa}"
        )
    if code != "AA" and reason:
        error_code = error_code or APPLICATION_INTERNAL_ERROR
        error_text = _ERROR_TEXT.get(error_code, "")
        # ERR-3 (table 0357), ERR-4 severity E, ERR-8 the reason for a person to read.
        ack_text += f"\rERR|||{error_code}^{error_text}^HL70357|E||||{escape(reason[:500])}"
    return ack_text + "\r"


def _plain_escape(text: str) -> str:
    # The default delimiters (|^~\&) escaped as HL7 2.5 section 2.7 says.
    text = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return text.replace("~", "\\R\\").replace("&", "\\T\\").replace("\r", " ").replace("\n", " ")
