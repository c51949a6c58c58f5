from __future__ import annotations

from django.urls import path

from consults import recording_views, scheduling_views, session_views, views

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
    path("appointments/<int:appointment_id>/start/", views.session_start, name="session-start"),
]

# Scheduling and notifications (consults/scheduling_views.py).
urlpatterns += [
    path("availability/", scheduling_views.availability, name="availability"),
    path("notifications/", scheduling_views.notification_list, name="notifications"),
    path("<int:referral_id>/book/", scheduling_views.referral_book, name="referral-book"),
    path(
        "appointments/<int:appointment_id>/reschedule/",
        scheduling_views.appointment_reschedule,
        name="appointment-reschedule",
    ),
    path(
        "appointments/<int:appointment_id>/cancel/",
        scheduling_views.appointment_cancel,
        name="appointment-cancel",
    ),
]

# The call page of a video session (consults/session_views.py).
urlpatterns += [
    path("sessions/<int:appointment_id>/", session_views.session_page, name="session"),
]

# Session recordings (consults/recording_views.py).
urlpatterns += [
    path(
        "sessions/<int:appointment_id>/recordings/",
        recording_views.session_recordings,
        name="session-recordings",
    ),
    path("recordings/<int:recording_id>/", recording_views.recording_file, name="recording-file"),
]
