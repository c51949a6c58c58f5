from __future__ import annotations

from django.urls import path

from ehr import extract_views, views

app_name = "ehr"

urlpatterns = [
    path("", views.patient_list, name="patient-list"),
    path("new/", views.patient_create, name="patient-create"),
    path("me/", views.my_record, name="my-record"),
    path("<int:patient_id>/", views.patient_detail, name="patient-detail"),
    path("<int:patient_id>/edit/", views.patient_edit, name="patient-edit"),
    path("<int:patient_id>/add/<slug:kind>/", views.entry_add, name="entry-add"),
    path(
        "<int:patient_id>/<slug:kind>/<int:entry_id>/edit/",
        views.entry_edit,
        name="entry-edit",
    ),
    path(
        "<int:patient_id>/documents/<int:document_id>/",
        views.document_download,
        name="document",
    ),
    path("<int:patient_id>/access-log/", views.patient_access_log, name="patient-access-log"),
    path("<int:patient_id>/extract/", extract_views.extract_page, name="extract"),
    path("<int:patient_id>/extract.pdf", extract_views.extract_pdf, name="extract-pdf"),
    path("<int:patient_id>/extract.fhir.json", extract_views.extract_fhir, name="extract-fhir"),
]
