"""The review queue: studies that matched no patient, or several, waiting for a clinician of
the receiving organization to attach them to the right patient."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from accounts import access
from accounts.models import AuditEvent, User
from ehr.models import Patient, validate_pin
from imaging.selectors import (
    record_study_reads,
    review_candidates,
    studies_waiting_for_review,
    study_for,
)
from imaging.services.matching import attach_study

PAGE_SIZE = 20


class AttachForm(forms.Form):
    patient = forms.IntegerField(required=False, widget=forms.HiddenInput)
    pin = forms.CharField(
        label=gettext_lazy("or the patient's personal number (PIN)"),
        max_length=14,
        required=False,
        validators=[validate_pin],
    )

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("patient") and not data.get("pin"):
            raise ValidationError(_("Choose a candidate or enter the patient's PIN."))
        return data


def _queue(
    request: HttpRequest, errors: dict[int, str] | None = None, status: int = 200
) -> HttpResponse:
    page = Paginator(studies_waiting_for_review(request.user), PAGE_SIZE).get_page(
        request.GET.get("page", 1)
    )
    studies = list(page.object_list)
    # The DICOM patient names and IDs on this page are patient data: each study is audited,
    # and so is each candidate patient proposed (by review_candidates).
    record_study_reads(user=request.user, studies=studies, action=AuditEvent.Action.LIST)
    rows = [
        {
            "study": study,
            "candidates": review_candidates(user=request.user, study=study),
            "error": (errors or {}).get(study.pk),
        }
        for study in studies
    ]
    return render(
        request,
        "imaging/review.html",
        {"page": page, "rows": rows, "form": AttachForm()},
        status=status,
    )


@login_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    return _queue(request)


def _chosen_patient(user: User, form: AttachForm) -> Patient | None:
    visible = access.scope(user, access.VIEW, Patient.objects.select_related("organization"))
    if form.cleaned_data.get("patient"):
        return visible.filter(pk=form.cleaned_data["patient"]).first()
    return visible.filter(pin=form.cleaned_data["pin"]).first()


@login_required
@require_POST
def attach(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(
        user=request.user,
        study_id=study_id,
        action=access.CHANGE,
        audit_action=AuditEvent.Action.VIEW,
        detail={"review": "attach"},
    )
    form = AttachForm(request.POST)
    if not form.is_valid():
        message = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        return _queue(request, {study.pk: message}, status=400)
    patient = _chosen_patient(request.user, form)
    if patient is None:
        return _queue(request, {study.pk: _("No patient you may see has this PIN.")}, status=400)
    try:
        attach_study(study=study, patient=patient, user=request.user)
    except PermissionDenied:
        return _queue(
            request,
            {study.pk: _("You may not change this patient's record: ask their clinic.")},
            status=403,
        )
    except ValidationError as error:
        return _queue(request, {study.pk: " ".join(error.messages)}, status=400)
    messages.success(
        request,
        _("The study is attached to %(name)s.") % {"name": patient.full_name},
    )
    return redirect("imaging:review-queue")
