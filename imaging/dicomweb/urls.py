"""DICOMweb (PS3.18) under /dicomweb/: QIDO-RS, WADO-RS and STOW-RS."""

from __future__ import annotations

from django.urls import path, register_converter

from imaging.dicomweb import views


class UidConverter:
    # PS3.5 9.1: digits and dots, at most 64 characters.
    regex = r"[0-9.]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "uid")

app_name = "dicomweb"

STUDY = "studies/<uid:study_uid>"
SERIES = f"{STUDY}/series/<uid:series_uid>"
INSTANCE = f"{SERIES}/instances/<uid:sop_uid>"

urlpatterns = [
    path("studies", views.studies, name="studies"),
    path("series", views.all_series, name="series-search"),
    path("instances", views.all_instances, name="instances-search"),
    path(STUDY, views.study, name="study"),
    path(f"{STUDY}/metadata", views.study_metadata, name="study-metadata"),
    path(f"{STUDY}/series", views.study_series, name="study-series"),
    path(f"{STUDY}/instances", views.study_instances, name="study-instances"),
    path(SERIES, views.series, name="series"),
    path(f"{SERIES}/metadata", views.series_metadata, name="series-metadata"),
    path(f"{SERIES}/instances", views.series_instances, name="series-instances"),
    path(INSTANCE, views.instance, name="instance"),
    path(f"{INSTANCE}/metadata", views.instance_metadata, name="instance-metadata"),
    path(f"{INSTANCE}/rendered", views.instance_rendered, name="instance-rendered"),
    path(f"{INSTANCE}/frames/<str:frames>", views.frames, name="frames"),
    path(f"{INSTANCE}/frames/<str:frames>/rendered", views.frames_rendered, name="frames-rendered"),
    path(f"{INSTANCE}/bulkdata/<str:tag>", views.bulkdata, name="bulkdata"),
]
