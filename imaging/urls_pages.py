"""Study pages and the viewer (imaging/views.py); included by imaging/urls.py."""

from __future__ import annotations

from django.urls import path

from imaging import views

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    path("studies/<int:study_id>/", views.study_detail, name="study-detail"),
    path("studies/<int:study_id>/viewer/", views.viewer, name="viewer"),
    path("patients/<int:patient_id>/studies/", views.patient_studies, name="patient-studies"),
    path("instances/<int:instance_id>/frames/<int:frame_number>.jpg", views.frame, name="frame"),
    path("series/<int:series_id>/thumbnail.jpg", views.series_thumbnail, name="series-thumbnail"),
    path("series/<int:series_id>/preview.jpg", views.series_preview, name="series-preview"),
    path("series/<int:series_id>/video.mp4", views.series_video, name="series-video"),
]
