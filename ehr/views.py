from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import Membership, Organization
from ehr import selectors
from ehr.forms import ENTRY_FORMS, ENTRY_TITLES, DocumentForm, ObservationForm, PatientForm
from ehr.models import Patient
from ehr.services.patients import PossibleDuplicate, register_patient, update_patient
from ehr.services.record import (
    ENTRY_MODELS,
    add_record_entry,
    attach_document,
    change_record_entry,
)


@login_required
def patient_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    page = selectors.search_patients(
        user=request.user, query=query, page=request.GET.get("page", 1)
    )
    return render(
        request,
        "ehr/patient_list.html",
        {
            "page": page,
            "query": query,
            "pager_query": urlencode({"q": query}),
            "can_register": bool(_registering_organizations(request)),
        },
    )


def _registering_organizations(request: HttpRequest) -> list[Organization]:
    ids = access.organization_ids(request.user, Membership.Role.CLINICIAN)
    return list(Organization.objects.filter(pk__in=ids))


@login_required
def patient_create(request: HttpRequest) -> HttpResponse:
    organizations = _registering_organizations(request)
    if not organizations:
        raise PermissionDenied
    form = PatientForm(request.POST or None, organizations=organizations)
    candidates: list[Patient] = []
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in form.Meta.fields}
        organization = form.cleaned_data.get("organization") or organizations[0]
        try:
            patient = register_patient(
                registered_by=request.user,
                organization=organization,
                confirmed_new=form.cleaned_data["confirmed_new"],
                **fields,
            )
        except PossibleDuplicate as duplicate:
            candidates = duplicate.candidates
            same_pin = any(c.pin and c.pin == fields.get("pin") for c in candidates)
            if not same_pin:
                # Asked again, the same form registers a different person of the same name.
                data = request.POST.copy()
                data["confirmed_new"] = "on"
                form = PatientForm(data, organizations=organizations)
                form.is_valid()
            form.add_error(
                None,
                _("A patient with this PIN is already registered.")
                if same_pin
                else _("This patient may already be registered. Open the existing record, or "
                       "confirm that this is a different person."),
            )  # fmt: skip
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("The patient is registered."))
            return redirect(patient)
    return render(
        request,
        "ehr/patient_form.html",
        {"form": form, "candidates": candidates, "is_new": True},
        status=400 if request.method == "POST" else 200,
    )


@login_required
def patient_edit(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = selectors.patient_for(user=request.user, patient_id=patient_id, action=access.CHANGE)
    form = PatientForm(request.POST or None, instance=patient)
    form.fields.pop("confirmed_new")
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in form.Meta.fields}
        try:
            update_patient(patient=patient, changed_by=request.user, **fields)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Saved."))
            return redirect(patient)
    return render(request, "ehr/patient_form.html", {"form": form, "patient": patient})


@login_required
def patient_detail(request: HttpRequest, patient_id: int) -> HttpResponse:
    record = selectors.patient_record(
        user=request.user, patient_id=patient_id, page=request.GET.get("page", 1)
    )
    return render(request, "ehr/patient_detail.html", {"record": record, "patient": record.patient})


@login_required
def entry_add(request: HttpRequest, patient_id: int, kind: str) -> HttpResponse:
    if kind not in ENTRY_FORMS:
        raise Http404
    patient = selectors.patient_for(user=request.user, patient_id=patient_id, action=access.CHANGE)
    form = ENTRY_FORMS[kind](request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            if isinstance(form, DocumentForm):
                attach_document(
                    patient=patient,
                    author=request.user,
                    title=form.cleaned_data["title"],
                    kind=form.cleaned_data["kind"],
                    upload=form.cleaned_data["file"],
                )
            else:
                fields = (
                    form.entry_fields()
                    if isinstance(form, ObservationForm)
                    else dict(form.cleaned_data)
                )
                add_record_entry(patient=patient, author=request.user, kind=kind, fields=fields)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Added to the record."))
            return redirect(patient)
    return render(
        request,
        "ehr/entry_form.html",
        {"form": form, "patient": patient, "title": ENTRY_TITLES[kind]},
        status=400 if request.method == "POST" else 200,
    )


@login_required
def entry_edit(request: HttpRequest, patient_id: int, kind: str, entry_id: int) -> HttpResponse:
    if kind not in ENTRY_FORMS or kind == "document":
        raise Http404
    entry = selectors.record_entry_for(
        user=request.user, model=ENTRY_MODELS[kind], entry_id=entry_id, patient_id=patient_id
    )
    form = ENTRY_FORMS[kind](request.POST or None, instance=entry)
    if request.method == "POST" and form.is_valid():
        fields = (
            form.entry_fields() if isinstance(form, ObservationForm) else dict(form.cleaned_data)
        )
        try:
            change_record_entry(entry=entry, author=request.user, fields=fields)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Saved."))
            return redirect(entry.patient)
    return render(
        request,
        "ehr/entry_form.html",
        {"form": form, "patient": entry.patient, "title": entry._meta.verbose_name.capitalize()},
    )


@login_required
def document_download(request: HttpRequest, patient_id: int, document_id: int) -> FileResponse:
    document = selectors.document_for(
        user=request.user, patient_id=patient_id, document_id=document_id
    )
    return FileResponse(
        document.file.open("rb"),
        content_type=document.content_type,
        as_attachment=request.GET.get("download") == "1",
        filename=document.file.name.rsplit("/", 1)[-1],
    )


@login_required
def patient_access_log(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient, readers = selectors.who_read_record(user=request.user, patient_id=patient_id)
    return render(request, "ehr/patient_access_log.html", {"patient": patient, "readers": readers})


@login_required
def my_record(request: HttpRequest) -> HttpResponse:
    patient = Patient.objects.filter(user=request.user).first()
    if patient is None:
        raise Http404("You have no patient record here")
    return redirect(patient)
