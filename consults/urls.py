from __future__ import annotations

from django.urls import path

from consults import views

app_name = "consults"

urlpatterns = [
    path("", views.referral_list, name="referral-list"),
    path("triage/", views.triage_queue, name="triage-queue"),
    path("new/<int:patient_id>/", views.referral_create, name="referral-create"),
    path("<int:referral_id>/", views.referral_detail, name="referral-detail"),
    path("<int:referral_id>/submit/", views.referral_submit, name="referral-submit"),
    path("<int:referral_id>/triage/", views.referral_triage, name="referral-triage"),
    path("<int:referral_id>/decline/", views.referral_decline, name="referral-decline"),
    path("<int:referral_id>/cancel/", views.referral_cancel, name="referral-cancel"),
    path("<int:referral_id>/report/", views.referral_report, name="referral-report"),
    path("<int:referral_id>/close/", views.referral_close, name="referral-close"),
]
