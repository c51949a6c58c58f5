"""The EHR extract as a page, a PDF and a FHIR Bundle."""

from __future__ import annotations

import datetime as dt
import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from ehr.extract import Extract, extract_for, render_pdf


def _as_of(request: HttpRequest) -> dt.datetime | None:
    """`?at=2026-05-01T10:00` (in the user's time zone) for the record as it stood then."""
    raw = request.GET.get("at")
    if not raw:
        return None
    moment = parse_datetime(raw)
    if moment is None:
        raise ValueError(raw)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def _extract(request: HttpRequest, patient_id: int) -> Extract | HttpResponse:
    try:
        as_of = _as_of(request)
    except ValueError:
        return HttpResponseBadRequest(_("The time must look like 2026-05-01T10:00."))
    return extract_for(user=request.user, patient_id=patient_id, as_of=as_of)


def _filename(extract: Extract, suffix: str) -> str:
    return f"extract-{extract.patient.pk}-{timezone.localtime(extract.as_of):%Y%m%d-%H%M}.{suffix}"


@login_required
def extract_page(request: HttpRequest, patient_id: int) -> HttpResponse:
    extract = _extract(request, patient_id)
    if isinstance(extract, HttpResponse):
        return extract
    return render(request, "ehr/extract.html", {"extract": extract, "patient": extract.patient})


@login_required
def extract_pdf(request: HttpRequest, patient_id: int) -> HttpResponse:
    extract = _extract(request, patient_id)
    if isinstance(extract, HttpResponse):
        return extract
    response = HttpResponse(render_pdf(extract), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{_filename(extract, "pdf")}"'
    return response


@login_required
def extract_fhir(request: HttpRequest, patient_id: int) -> HttpResponse:
    from ehr.fhir.mapping import summary_bundle

    extract = _extract(request, patient_id)
    if isinstance(extract, HttpResponse):
        return extract
    bundle = summary_bundle(extract.patient, as_of=extract.as_of)
    response = HttpResponse(
        json.dumps(bundle, ensure_ascii=False, indent=1),
        content_type="application/fhir+json; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(extract, "json")}"'
    return response
