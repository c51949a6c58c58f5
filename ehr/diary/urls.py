from __future__ import annotations

from django.urls import path

from ehr.diary import views

app_name = "diary"

urlpatterns = [
    path("", views.diary_page, name="home"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("entries/", views.diary_entry_create, name="entries"),
    path("patients/<int:patient_id>/", views.patient_diary, name="patient-diary"),
    path("patients/<int:patient_id>/data/", views.chart_data, name="chart-data"),
    path("patients/<int:patient_id>/thresholds/", views.threshold_set, name="threshold-set"),
    path("alerts/<int:alert_id>/ack/", views.alert_ack, name="alert-ack"),
]
