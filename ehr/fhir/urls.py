from __future__ import annotations

from django.urls import path, re_path

from ehr.fhir import views

app_name = "fhir"

# The base URL itself takes transactions (POST [base]). telemed/urls.py mounts this at
# "fhir/", so "/fhir" without the slash does not reach it (see the README).
urlpatterns = [
    path("", views.transaction, name="base"),
    path("metadata", views.metadata, name="metadata"),
    path("Patient", views.patient_search, name="patient-search"),
    path("Patient/<str:patient_id>", views.patient_read, name="patient-read"),
    path("Patient/<str:patient_id>/$everything", views.patient_everything, name="everything"),
    # Anything else under /fhir/ answers as FHIR does, with an OperationOutcome.
    re_path(r"^(?P<path>.+)$", views.unsupported, name="unsupported"),
]
