"""The clinician's target-range form; the patient's readings arrive as JSON (see views)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _


class CommaDecimalField(forms.DecimalField):
    """Accepts "3,9" as well as "3.9" in every language: phones and keyboards in Russian and
    Kyrgyz type a decimal comma, English ones a point."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().replace(",", ".")
        return super().to_python(value)


def _bound(label: str) -> forms.DecimalField:
    return CommaDecimalField(
        label=label,
        required=False,
        max_digits=8,
        decimal_places=2,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


class ThresholdForm(forms.Form):
    """One measure's range, prefixed with the measure (several forms on one page); the
    measure itself is a plain hidden input. The service checks the values (plausible,
    lowest <= highest)."""

    low = _bound(_("lowest"))
    high = _bound(_("highest"))
    second_low = _bound(_("lowest diastolic"))
    second_high = _bound(_("highest diastolic"))
