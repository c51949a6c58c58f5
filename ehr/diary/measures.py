"""What the health diary records: one spec per measure, and the plausibility check of a reading.

Pure facts and parsing, no database: the service, the views (which pass the same ranges to the
browser for instant feedback) and the tests all read these specs, so the ranges live in one
place. Codes are LOINC, units UCUM, as FHIR's vital-signs profile has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from ehr.models import DiaryMeasure, Observation

MAX_SYMPTOMS_LENGTH = 2000


@dataclass(frozen=True)
class Field:
    """One number the patient types: its name in the JSON, its plausible range."""

    name: str
    label: Promise
    low: Decimal
    high: Decimal
    decimals: int  # 0: whole numbers (numeric keyboard); 1: one decimal (decimal keyboard)
    code: str = ""  # LOINC of the component, for blood pressure
    display: str = ""

    @property
    def inputmode(self) -> str:
        return "numeric" if self.decimals == 0 else "decimal"


@dataclass(frozen=True)
class MeasureSpec:
    measure: str
    code: str
    display: str  # the FHIR display, stored in English as the code system has it
    unit: str
    unit_label: str
    category: str
    fields: tuple[Field, ...] = ()

    @property
    def label(self) -> str:
        return DiaryMeasure(self.measure).label

    @property
    def is_text(self) -> bool:
        return not self.fields

    @property
    def has_two_values(self) -> bool:
        return len(self.fields) == 2


def _field(name: str, label: Promise, low: str, high: str, decimals: int, **kw: str) -> Field:
    return Field(name, label, Decimal(low), Decimal(high), decimals, **kw)


VITAL = Observation.Category.VITAL_SIGNS

SPECS: dict[str, MeasureSpec] = {
    spec.measure: spec
    for spec in (
        MeasureSpec(
            DiaryMeasure.BLOOD_PRESSURE,
            "85354-9",
            "Blood pressure panel",
            "mm[Hg]",
            "mmHg",
            VITAL,
            (
                _field(
                    "systolic",
                    _("Systolic (upper)"),
                    "50",
                    "300",
                    0,
                    code="8480-6",
                    display="Systolic blood pressure",
                ),
                _field(
                    "diastolic",
                    _("Diastolic (lower)"),
                    "30",
                    "200",
                    0,
                    code="8462-4",
                    display="Diastolic blood pressure",
                ),
            ),
        ),  # fmt: skip
        MeasureSpec(
            DiaryMeasure.PULSE,
            "8867-4",
            "Heart rate",
            "/min",
            "/min",
            VITAL,
            (_field("value", _("Pulse, beats per minute"), "25", "250", 0),),
        ),  # fmt: skip
        MeasureSpec(
            DiaryMeasure.GLUCOSE,
            "15074-8",
            "Glucose [Moles/volume] in Blood",
            "mmol/L",
            "mmol/L",
            VITAL,
            (_field("value", _("Blood glucose, mmol/L"), "1", "40", 1),),
        ),  # fmt: skip
        MeasureSpec(
            DiaryMeasure.WEIGHT,
            "29463-7",
            "Body weight",
            "kg",
            "kg",
            VITAL,
            (_field("value", _("Weight, kg"), "2", "400", 1),),
        ),  # fmt: skip
        MeasureSpec(
            DiaryMeasure.TEMPERATURE,
            "8310-5",
            "Body temperature",
            "Cel",
            "°C",
            VITAL,
            (_field("value", _("Temperature, °C"), "30", "45", 1),),
        ),  # fmt: skip
        MeasureSpec(
            DiaryMeasure.SPO2,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            "%",
            "%",
            VITAL,
            (_field("value", _("Oxygen saturation (SpO2), %"), "50", "100", 0),),
        ),  # fmt: skip
        MeasureSpec(
            DiaryMeasure.SYMPTOMS, "75325-1", "Symptom", "", "", Observation.Category.SURVEY
        ),
    )
}

NUMERIC_MEASURES = [measure for measure, spec in SPECS.items() if not spec.is_text]


def spec_for(measure: str) -> MeasureSpec:
    try:
        return SPECS[measure]
    except KeyError:
        raise ValidationError(
            {"measure": _("Unknown measure: choose one from the list.")}, code="unknown_measure"
        ) from None


def _number(raw: Any, field: Field) -> Decimal:
    # Phones in Russian and Kyrgyz type a decimal comma: "36,6".
    text = str(raw if raw is not None else "").strip().replace(",", ".")
    if not text:
        raise ValidationError(_("Enter %(what)s.") % {"what": field.label}, code="required")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValidationError(
            _("%(what)s must be a number.") % {"what": field.label}, code="not_a_number"
        ) from None
    if not number.is_finite() or not field.low <= number <= field.high:
        raise ValidationError(
            _("%(what)s must be between %(low)s and %(high)s. Please check the reading.")
            % {"what": field.label, "low": field.low, "high": field.high},
            code="implausible",
        )
    return number.quantize(Decimal(1).scaleb(-field.decimals))


def clean_values(measure: str, values: dict[str, Any]) -> dict[str, Any]:
    """The reading as numbers (or text), or ValidationError naming each field that is wrong."""
    spec = spec_for(measure)
    if not isinstance(values, dict):
        raise ValidationError(_("The reading is malformed."), code="malformed")
    if spec.is_text:
        text = str(values.get("text") or "").strip()
        if not text:
            raise ValidationError({"text": _("Describe how you feel.")}, code="required")
        if len(text) > MAX_SYMPTOMS_LENGTH:
            raise ValidationError(
                {"text": _("Please keep it under %(count)d characters.")
                 % {"count": MAX_SYMPTOMS_LENGTH}},
                code="too_long",
            )  # fmt: skip
        return {"text": text}
    cleaned: dict[str, Any] = {}
    errors: dict[str, ValidationError] = {}
    for field in spec.fields:
        try:
            cleaned[field.name] = _number(values.get(field.name), field)
        except ValidationError as error:
            errors[field.name] = error
    if errors:
        raise ValidationError(errors)
    if spec.has_two_values and cleaned["diastolic"] >= cleaned["systolic"]:
        raise ValidationError(
            {"diastolic": _("The lower (diastolic) value must be less than the upper (systolic).")},
            code="implausible",
        )
    return cleaned


def observation_fields(measure: str, cleaned: dict[str, Any]) -> dict[str, Any]:
    """The Observation columns for a cleaned reading."""
    spec = SPECS[measure]
    fields: dict[str, Any] = {
        "category": spec.category,
        "code": spec.code,
        "display": spec.display,
        "unit": spec.unit,
    }
    if spec.is_text:
        fields["value_text"] = cleaned["text"]
    elif spec.has_two_values:
        # Whole numbers in the JSON, as FHIR's valueQuantity; the panel itself has no value.
        fields["components"] = [
            {
                "code": field.code,
                "display": field.display,
                "value": int(cleaned[field.name]),
                "unit": spec.unit,
            }
            for field in spec.fields
        ]
    else:
        fields["value"] = cleaned["value"]
    return fields


def numbers_of(observation: Observation) -> list[float | None]:
    """The numbers a chart draws for one observation: one, or two for blood pressure."""
    if observation.components:
        return [float(component["value"]) for component in observation.components]
    return [float(observation.value) if observation.value is not None else None]


def measure_of(observation: Observation) -> str | None:
    for measure, spec in SPECS.items():
        if spec.code == observation.code:
            return measure
    return None


def browser_specs() -> list[dict[str, Any]]:
    """The specs as the diary page's script needs them (labels already translated)."""
    return [
        {
            "measure": spec.measure,
            "label": str(spec.label),
            "unit": spec.unit_label,
            "fields": [
                {
                    "name": field.name,
                    "label": str(field.label),
                    "low": float(field.low),
                    "high": float(field.high),
                    "decimals": field.decimals,
                }
                for field in spec.fields
            ],
        }
        for spec in SPECS.values()
    ]
