from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from ehr.models import (
    Allergy,
    ClinicalNote,
    Condition,
    Document,
    Encounter,
    Medication,
    Observation,
    Patient,
)
from ehr.services.patients import IDENTITY_FIELDS

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class PatientForm(forms.ModelForm):
    confirmed_new = forms.BooleanField(
        label=_("This is a different person with the same name and birth date"),
        required=False,
        widget=forms.HiddenInput,
    )

    class Meta:
        model = Patient
        fields = IDENTITY_FIELDS
        widgets = {
            "birth_date": DATE,
            "pin": forms.TextInput(attrs={"inputmode": "numeric", "maxlength": 14}),
            "phone": forms.TextInput(attrs={"inputmode": "tel"}),
        }
        help_texts = {
            "family_name_latin": _("As in the passport; filled in from the Cyrillic if empty."),
        }

    def __init__(self, *args: Any, organizations: list | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if organizations is not None and len(organizations) > 1:
            self.fields["organization"] = forms.ModelChoiceField(
                label=_("Home clinic"), queryset=organizations[0].__class__.objects.filter(
                    pk__in=[o.pk for o in organizations]
                )
            )  # fmt: skip

    def validate_unique(self) -> None:
        # The registration service answers a taken PIN with the existing patient instead.
        pass


ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
LOINC = re.compile(r"^\d{1,7}-\d$")


class EncounterForm(forms.ModelForm):
    class Meta:
        model = Encounter
        fields = ["kind", "status", "started_at", "ended_at", "reason"]
        widgets = {"started_at": DATETIME, "ended_at": DATETIME}


class ConditionForm(forms.ModelForm):
    class Meta:
        model = Condition
        fields = ["icd10_code", "description", "clinical_status", "onset_date", "note"]
        widgets = {"onset_date": DATE, "note": forms.Textarea(attrs={"rows": 3})}

    def clean_icd10_code(self) -> str:
        code = self.cleaned_data["icd10_code"].strip().upper()
        if not ICD10.match(code):
            raise ValidationError(_("An ICD-10 code looks like I10 or E11.9."))
        return code


class MedicationForm(forms.ModelForm):
    class Meta:
        model = Medication
        fields = ["name", "dose", "route", "frequency", "status", "start_date", "end_date", "note"]
        widgets = {"start_date": DATE, "end_date": DATE}


class AllergyForm(forms.ModelForm):
    class Meta:
        model = Allergy
        fields = ["substance", "reaction", "severity", "status"]


class ObservationForm(forms.ModelForm):
    """A vital sign or a lab result; blood pressure is entered as systolic and diastolic."""

    systolic = forms.IntegerField(label=_("Systolic"), required=False, min_value=40, max_value=300)
    diastolic = forms.IntegerField(
        label=_("Diastolic"), required=False, min_value=20, max_value=200
    )

    class Meta:
        model = Observation
        fields = [
            "category",
            "code",
            "display",
            "value",
            "unit",
            "value_text",
            "reference_low",
            "reference_high",
            "interpretation",
            "effective_at",
        ]
        widgets = {"effective_at": DATETIME, "value_text": forms.Textarea(attrs={"rows": 2})}
        help_texts = {"code": _("LOINC, e.g. 2345-7 for glucose")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["display"].required = False  # blood pressure names itself

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()
        if code and not LOINC.match(code):
            raise ValidationError(_("A LOINC code looks like 2345-7."))
        return code

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        systolic, diastolic = data.get("systolic"), data.get("diastolic")
        if (systolic is None) != (diastolic is None):
            raise ValidationError(_("Blood pressure needs both systolic and diastolic values."))
        if systolic is not None:
            data["code"] = "85354-9"
            data["display"] = data.get("display") or str(_("Blood pressure"))
            data["components"] = [
                {"code": "8480-6", "display": "Systolic blood pressure", "value": systolic,
                 "unit": "mm[Hg]"},
                {"code": "8462-4", "display": "Diastolic blood pressure", "value": diastolic,
                 "unit": "mm[Hg]"},
            ]  # fmt: skip
        elif data.get("value") is None and not data.get("value_text"):
            raise ValidationError(_("Enter a value, a text result, or a blood pressure."))
        elif not data.get("display"):
            self.add_error("display", _("Say what was measured."))
        return data

    def entry_fields(self) -> dict[str, Any]:
        fields = {name: self.cleaned_data.get(name) for name in self.Meta.fields}
        fields = {name: ("" if value is None and name in _TEXT else value)
                  for name, value in fields.items()}  # fmt: skip
        if "components" in self.cleaned_data:
            fields["components"] = self.cleaned_data["components"]
            fields["unit"] = fields["unit"] or "mm[Hg]"
        return fields


_TEXT = {"code", "display", "unit", "value_text", "interpretation"}


class NoteForm(forms.ModelForm):
    class Meta:
        model = ClinicalNote
        fields = ["title", "text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 6})}


class DocumentForm(forms.Form):
    title = forms.CharField(label=_("Title"), max_length=200, required=False)
    kind = forms.ChoiceField(label=_("Kind"), choices=Document.Kind.choices)
    file = forms.FileField(label=_("File (PDF or image)"))


ENTRY_FORMS: dict[str, type[forms.Form]] = {
    "encounter": EncounterForm,
    "condition": ConditionForm,
    "medication": MedicationForm,
    "allergy": AllergyForm,
    "observation": ObservationForm,
    "note": NoteForm,
    "document": DocumentForm,
}

ENTRY_TITLES = {
    "encounter": _("Add an encounter"),
    "condition": _("Add a diagnosis"),
    "medication": _("Add a medication"),
    "allergy": _("Add an allergy"),
    "observation": _("Add a measurement or result"),
    "note": _("Add a clinical note"),
    "document": _("Attach a document"),
}
