from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from ehr import selectors
from ehr.models import Patient


@login_required
def patient_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    page = selectors.search_patients(
        user=request.user, query=query, page=request.GET.get("page", 1)
    )
    return render(
        request,
        "ehr/patient_list.html",
        {"page": page, "query": query, "pager_query": urlencode({"q": query})},
    )


@login_required
def patient_detail(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = selectors.patient_for(user=request.user, patient_id=patient_id)
    return render(request, "ehr/patient_detail.html", {"patient": patient})


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
