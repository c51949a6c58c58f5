"""Pages reached without logging in: a patient's join link, and the device check."""

from __future__ import annotations

from django.urls import URLPattern, path

from consults import join_views

app_name = "join"

urlpatterns: list[URLPattern] = [
    # Before "<token>/", which would otherwise swallow these words.
    path("device-check/", join_views.device_check, name="device-check"),
    path("device-check/probe", join_views.device_check_probe, name="device-check-probe"),
    path("session/<int:appointment_id>/", join_views.join_waiting, name="waiting"),
    path("<str:token>/", join_views.join_link, name="link"),
    path("<str:token>/enter/", join_views.join_enter, name="enter"),
]
