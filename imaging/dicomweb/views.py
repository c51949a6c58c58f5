"""The DICOMweb endpoints under /dicomweb/ (PS3.18): each checks the method and the caller
(API token or browser session), then hands over to QIDO-RS, WADO-RS or STOW-RS.

Access is that of imaging.selectors: a study the caller may not see is answered exactly like
one that does not exist (404), and every answer that carries patient data is audited.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from imaging.dicomweb import qido, rendered, stow, wado
from imaging.dicomweb.auth import dicomweb_view


@dicomweb_view("GET", "HEAD", "POST")
def studies(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return stow.store_instances(request)
    return qido.search_studies(request)


@dicomweb_view("GET", "HEAD", "POST")
def study(request: HttpRequest, study_uid: str) -> HttpResponse:
    if request.method == "POST":
        return stow.store_instances(request, study_uid)
    return wado.retrieve_study(request, study_uid)


@dicomweb_view("GET", "HEAD")
def study_metadata(request: HttpRequest, study_uid: str) -> HttpResponse:
    return wado.study_metadata(request, study_uid)


@dicomweb_view("GET", "HEAD")
def study_series(request: HttpRequest, study_uid: str) -> HttpResponse:
    return qido.search_series(request, study_uid)


@dicomweb_view("GET", "HEAD")
def study_instances(request: HttpRequest, study_uid: str) -> HttpResponse:
    return qido.search_instances(request, study_uid)


@dicomweb_view("GET", "HEAD")
def all_series(request: HttpRequest) -> HttpResponse:
    return qido.search_series(request)


@dicomweb_view("GET", "HEAD")
def all_instances(request: HttpRequest) -> HttpResponse:
    return qido.search_instances(request)


@dicomweb_view("GET", "HEAD")
def series(request: HttpRequest, study_uid: str, series_uid: str) -> HttpResponse:
    return wado.retrieve_series(request, study_uid, series_uid)


@dicomweb_view("GET", "HEAD")
def series_metadata(request: HttpRequest, study_uid: str, series_uid: str) -> HttpResponse:
    return wado.series_metadata(request, study_uid, series_uid)


@dicomweb_view("GET", "HEAD")
def series_instances(request: HttpRequest, study_uid: str, series_uid: str) -> HttpResponse:
    return qido.search_instances(request, study_uid, series_uid)


@dicomweb_view("GET", "HEAD")
def instance(request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str) -> HttpResponse:
    return wado.retrieve_instance(request, study_uid, series_uid, sop_uid)


@dicomweb_view("GET", "HEAD")
def instance_metadata(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    return wado.instance_metadata(request, study_uid, series_uid, sop_uid)


@dicomweb_view("GET", "HEAD")
def instance_rendered(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    return rendered.instance_rendered(request, study_uid, series_uid, sop_uid)


@dicomweb_view("GET", "HEAD")
def frames(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, frames: str
) -> HttpResponse:
    return wado.instance_frames(request, study_uid, series_uid, sop_uid, frames)


@dicomweb_view("GET", "HEAD")
def frames_rendered(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, frames: str
) -> HttpResponse:
    return rendered.frame_rendered(request, study_uid, series_uid, sop_uid, frames)


@dicomweb_view("GET", "HEAD")
def bulkdata(
    request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str, tag: str
) -> HttpResponse:
    return wado.instance_bulkdata(request, study_uid, series_uid, sop_uid, tag)
