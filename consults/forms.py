from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, Specialty, User
from consults.models import ConsultReport, Referral
from ehr.forms import ICD10
from ehr.models import Document


class ReferralForm(forms.ModelForm):
    class Meta:
        model = Referral
        fields = ["specialty", "urgency", "question", "documents"]
        widgets = {
            "question": forms.Textarea(attrs={"rows": 5}),
            "documents": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args: Any, patient: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["documents"].queryset = Document.objects.filter(patient=patient)
        self.fields["documents"].required = False


class TriageForm(forms.Form):
    specialist = forms.ModelChoiceField(label=_("Specialist"), queryset=User.objects.none())
    priority = forms.IntegerField(label=_("Priority (1 = first)"), min_value=1, max_value=9,
                                  initial=5)  # fmt: skip
    mode = forms.ChoiceField(label=_("How"), choices=Referral.Mode.choices)

    def __init__(self, *args: Any, specialists: list[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["specialist"].queryset = User.objects.filter(pk__in=[s.pk for s in specialists])


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 2}))


class ReportForm(forms.ModelForm):
    class Meta:
        model = ConsultReport
        fields = ["findings", "diagnosis_code", "diagnosis_text", "recommendations", "follow_up"]
        widgets = {
            "findings": forms.Textarea(attrs={"rows": 5}),
            "recommendations": forms.Textarea(attrs={"rows": 4}),
        }

    def clean_diagnosis_code(self) -> str:
        code = self.cleaned_data["diagnosis_code"].strip().upper()
        if not ICD10.match(code):
            raise forms.ValidationError(_("An ICD-10 code looks like I10 or E11.9."))
        return code


class QueueFilterForm(forms.Form):
    organization = forms.ModelChoiceField(
        label=_("Clinic"), queryset=Organization.objects.none(), required=False
    )
    specialty = forms.ModelChoiceField(
        label=_("Specialty"), queryset=Specialty.objects.all(), required=False
    )
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("waiting for triage"))]
        + [(s.value, s.label) for s in Referral.Status if s != Referral.Status.DRAFT],
    )

    def __init__(self, *args: Any, regions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The clinics whose referrals this coordinator triages.
        self.fields["organization"].queryset = Organization.objects.filter(
            region__in=regions, kind=Organization.Kind.RURAL_CLINIC
        )
