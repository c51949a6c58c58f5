from __future__ import annotations

from django.urls import path

from ehr import views

app_name = "ehr"

urlpatterns = [
    path("", views.patient_list, name="patient-list"),
    path("me/", views.my_record, name="my-record"),
    path("<int:patient_id>/", views.patient_detail, name="patient-detail"),
    path("<int:patient_id>/access-log/", views.patient_access_log, name="patient-access-log"),
]
