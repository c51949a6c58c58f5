"""The health diary's pages and JSON endpoints: thin edges over ehr.services.diary."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts import access
from ehr.diary import selectors
from ehr.diary.forms import ThresholdForm
from ehr.diary.measures import NUMERIC_MEASURES, SPECS, browser_specs
from ehr.models import DiaryThreshold, Patient
from ehr.selectors import patient_for
from ehr.services.diary import acknowledge_alert, record_diary_entry, set_threshold

SERVICE_WORKER = Path(__file__).resolve().parent.parent / "static" / "ehr" / "diary-sw.js"


def _chart_strings() -> dict[str, str]:
    return {
        "systolic": _("Systolic"),
        "diastolic": _("Diastolic"),
        "target": _("Target range"),
        "noReadings": _("No readings yet."),
        "loadFailed": _("The charts could not be loaded. They will appear when you are online."),
    }


def _queue_strings() -> dict[str, str]:
    return {
        "waiting": _("Waiting to be sent"),
        "sending": _("Sending…"),
        "sent": _("Sent"),
        "refused": _("Refused"),
        "remove": _("Remove"),
        "offline": _("You are offline. Entries are kept on this phone and sent later."),
        "savedOffline": _("Saved on this phone. It will be sent when you are online."),
        "saved": _("Saved."),
        "loginAgain": _("Please log in again: your entries are kept and will be sent after."),
        "nothingYet": _("Nothing recorded from this phone yet."),
        "checkValue": _("%(what)s must be between %(low)s and %(high)s. Please check the reading."),
        "enterValue": _("Enter %(what)s."),
        "describe": _("Describe how you feel."),
        "diastolicBelow": _("The lower (diastolic) value must be less than the upper (systolic)."),
    }


@login_required
def diary_page(request: HttpRequest) -> HttpResponse:
    """The patient's own diary on the phone: record a reading in a few taps, see the queue."""
    patient = selectors.own_diary_patient(request.user)
    config = {
        "entriesUrl": reverse("diary:entries"),
        "dataUrl": reverse("diary:chart-data", args=[patient.pk]),
        "serviceWorkerUrl": reverse("diary:service-worker"),
        "csrfCookieName": settings.CSRF_COOKIE_NAME,
        "queueKey": f"telemed-diary-queue:{request.user.pk}",
        "measures": browser_specs(),
        "strings": {**_queue_strings(), **_chart_strings()},
    }
    context = {"patient": patient, "specs": list(SPECS.values()), "config": config}
    return render(request, "ehr/diary_page.html", context)


def _refused(message: str, errors: dict[str, list[str]] | None = None, uuid: Any = None) -> Any:
    body = {"status": "refused", "uuid": uuid, "message": message, "errors": errors or {}}
    return JsonResponse(body, status=400)


@require_POST
def diary_entry_create(request: HttpRequest) -> JsonResponse:
    """POST JSON {uuid, measure, values, measured_at}: 201 stored, 200 already stored (same
    uuid), 400 refused with the reason (the browser keeps it, marked refused), 401/403 when
    the sender is not logged in or keeps no diary (the browser keeps it waiting)."""
    if not request.user.is_authenticated:
        return JsonResponse(
            {"status": "login", "message": _queue_strings()["loginAgain"]}, status=401
        )
    try:
        payload = json.loads(request.body)
        if not isinstance(payload, dict):
            raise ValueError
    except ValueError:
        return _refused(_("The entry is malformed."))
    client_uuid = payload.get("uuid")
    measured_at = None
    if payload.get("measured_at"):
        try:
            measured_at = parse_datetime(str(payload["measured_at"]))
        except ValueError:
            measured_at = None
        if measured_at is None:
            return _refused(_("The time of the reading is not a date."), uuid=client_uuid)
    patient = Patient.objects.filter(user=request.user).select_related("organization").first()
    try:
        if patient is None:
            raise PermissionDenied
        observation, created = record_diary_entry(
            patient=patient,
            user=request.user,
            measure=str(payload.get("measure", "")),
            values=payload.get("values") or {},
            client_uuid=client_uuid,
            measured_at=measured_at,
        )
    except PermissionDenied:
        message = _("Only the patient keeps their own health diary.")
        return JsonResponse({"status": "forbidden", "message": message}, status=403)
    except ValidationError as error:
        errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
        message = " ".join(m for messages_ in errors.values() for m in messages_)
        return _refused(message, errors, uuid=client_uuid)
    body = {
        "status": "saved",
        "uuid": observation.source_id,
        "id": observation.pk,
        "created": created,
        "alert": hasattr(observation, "alert"),
    }
    return JsonResponse(body, status=201 if created else 200)


@login_required
@require_GET
def chart_data(request: HttpRequest, patient_id: int) -> JsonResponse:
    """The series for the charts (audited read; 404 for a patient `user` may not read)."""
    try:
        days = int(request.GET.get("days", 90))
    except ValueError:
        days = 90
    data = selectors.diary_series(user=request.user, patient_id=patient_id, days=days)
    response = JsonResponse(data)
    response["Cache-Control"] = "private, no-store"
    return response


def _plain(value: Any) -> str:
    return "" if value is None else f"{value.normalize():f}"


def _threshold_forms(
    patient: Patient, bound: ThresholdForm | None = None
) -> list[tuple[Any, ThresholdForm]]:
    thresholds: dict[str, DiaryThreshold] = selectors.thresholds_for(patient)
    forms = []
    for measure in NUMERIC_MEASURES:
        if bound is not None and bound.prefix == measure:
            forms.append((SPECS[measure], bound))
            continue
        threshold = thresholds.get(measure)
        initial: dict[str, Any] = {}
        if threshold is not None:
            initial = {
                name: _plain(getattr(threshold, name))
                for name in ("low", "high", "second_low", "second_high")
            }
        forms.append((SPECS[measure], ThresholdForm(initial=initial, prefix=measure)))
    return forms


def _render_patient_diary(
    request: HttpRequest, patient: Patient, bound: ThresholdForm | None = None, status: int = 200
) -> HttpResponse:
    config = {
        "dataUrl": reverse("diary:chart-data", args=[patient.pk]),
        "measures": browser_specs(),
        "strings": _chart_strings(),
    }
    context = {
        "patient": patient,
        "can_change": access.can(request.user, access.CHANGE, patient),
        "threshold_forms": _threshold_forms(patient, bound),
        "entries": selectors.recent_diary_entries(patient),
        "config": config,
    }
    return render(request, "ehr/diary_patient.html", context, status=status)


@login_required
def patient_diary(request: HttpRequest, patient_id: int) -> HttpResponse:
    """A patient's diary for their clinicians: charts, latest entries, target ranges."""
    patient = patient_for(user=request.user, patient_id=patient_id)
    return _render_patient_diary(request, patient)


@login_required
@require_POST
def threshold_set(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = patient_for(user=request.user, patient_id=patient_id, action=access.CHANGE)
    measure = request.POST.get("measure", "")
    if measure not in NUMERIC_MEASURES:
        messages.error(request, _("Unknown measure: choose one from the list."))
        return redirect("diary:patient-diary", patient_id=patient.pk)
    form = ThresholdForm(request.POST, prefix=measure)
    if form.is_valid():
        try:
            set_threshold(
                patient=patient,
                user=request.user,
                measure=measure,
                low=form.cleaned_data["low"],
                high=form.cleaned_data["high"],
                second_low=form.cleaned_data["second_low"],
                second_high=form.cleaned_data["second_high"],
            )
        except ValidationError as error:
            for field, errors in error.message_dict.items():
                for message in errors:
                    form.add_error(field if field in form.fields else None, message)
        else:
            messages.success(request, _("Target range saved."))
            return redirect("diary:patient-diary", patient_id=patient.pk)
    return _render_patient_diary(request, patient, bound=form, status=400)


@login_required
@require_POST
def alert_ack(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = selectors.alert_for(user=request.user, alert_id=alert_id)
    acknowledge_alert(alert=alert, user=request.user)
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = reverse("dashboard")
    return redirect(next_url)


@cache
def _service_worker_source() -> str:
    return SERVICE_WORKER.read_text(encoding="utf-8")


@never_cache
@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """Served under /diary/ (not /static/) so that it may control the diary page."""
    precache = [
        reverse("diary:home"),
        static("telemed/app.css"),
        static("ehr/diary.css"),
        static("ehr/diary.js"),
        static("vendor/uplot/uPlot.iife.min.js"),
        static("vendor/uplot/uPlot.min.css"),
    ]
    source = _service_worker_source().replace("__PRECACHE__", json.dumps(precache))
    return HttpResponse(source, content_type="text/javascript; charset=utf-8")
