"""Study pages: the study list, a patient's studies, the study page, and the minimal viewer
with its server-rendered frames, thumbnails and cine videos.

Reads of patient data are audited by the selectors: the lists one event per study shown, the
study and viewer pages one view each, and the viewer's frames once per series opened (not once
per frame: a CT of 300 slices would drown the audit log).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from accounts import access
from accounts.models import Membership, User
from imaging import selectors
from imaging.dicom.render import NotRenderable
from imaging.models import Instance, Series, Study
from imaging.services.query import QueryError
from imaging.services.renditions import rendered_frame

STUDIES_PER_PAGE = 25
# Viewer frame sizes are rounded up to one of these, so that phones and desktops share cached
# renditions instead of each asking for its own exact size.
FRAME_SIZES = (256, 384, 512, 768, 1024, 1536, 2048)

PRESETS = [
    ("default", _("Default"), None),
    ("brain", _("Brain"), (40, 80)),
    ("lung", _("Lung"), (-600, 1500)),
    ("bone", _("Bone"), (300, 1500)),
    ("abdomen", _("Abdomen"), (40, 400)),
]


class StudySearchForm(forms.Form):
    patient = forms.CharField(
        label=_("Patient"),
        required=False,
        widget=forms.TextInput(attrs={"placeholder": _("Name, PIN or patient ID")}),
    )
    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    modality = forms.CharField(
        label=_("Modality"),
        required=False,
        max_length=16,
        widget=forms.TextInput(attrs={"placeholder": "CT, MR, US…", "size": 6}),
    )
    accession = forms.CharField(label=_("Accession number"), required=False, max_length=16)

    def clean_modality(self) -> str:
        value = self.cleaned_data["modality"].strip().upper()
        if value and not re.fullmatch(r"[A-Z0-9]{1,16}", value):
            raise forms.ValidationError(_("A modality is a code such as CT, MR or US."))
        return value


def _listed(user: User, studies: QuerySet[Study], page_number: str | int) -> Page:
    page = Paginator(
        studies.prefetch_related("series").order_by("-study_date", "-study_time", "-id"),
        STUDIES_PER_PAGE,
    ).get_page(page_number)
    selectors.record_study_reads(user=user, studies=list(page.object_list))
    for study in page.object_list:
        _for_display(study)
    return page


def person_name(value: str) -> str:
    """A DICOM person name (Family^Given^Middle, maybe =ideographic=phonetic) as words."""
    alphabetic = (value or "").split("=")[0]
    return " ".join(part for part in alphabetic.split("^") if part.strip())


def _for_display(study: Study) -> Study:
    study.display_date = display_date(study.study_date)
    study.display_birth_date = display_date(study.dicom_birth_date)
    study.display_patient_name = person_name(study.dicom_patient_name)
    study.display_referring = person_name(study.referring_physician)
    return study


def display_date(value: str) -> str:
    """A DICOM date (YYYYMMDD) as people here write it: DD.MM.YYYY."""
    if re.fullmatch(r"\d{8}", value or ""):
        return f"{value[6:8]}.{value[4:6]}.{value[0:4]}"
    return value or "—"


@login_required
@require_GET
def study_list(request: HttpRequest) -> HttpResponse:
    form = StudySearchForm(request.GET or None)
    studies = selectors.studies_visible_to(request.user)
    status = 200
    if form.is_bound and not form.is_valid():
        studies, status = studies.none(), 400
    elif form.is_bound:
        try:
            studies = selectors.search_studies(
                studies,
                patient=form.cleaned_data["patient"],
                date_from=form.cleaned_data["date_from"],
                date_to=form.cleaned_data["date_to"],
                modality=form.cleaned_data["modality"],
                accession=form.cleaned_data["accession"],
            )
        except QueryError as error:
            form.add_error(None, str(error))
            studies, status = studies.none(), 400
    query = {key: value for key, value in request.GET.items() if key != "page" and value}
    return render(
        request,
        "imaging/study_list.html",
        {
            "form": form,
            "page": _listed(request.user, studies, request.GET.get("page", 1)),
            "pager_query": urlencode(query),
            # Clinicians bring images in and match the studies their clinic received.
            "can_upload": access.has_role(request.user, Membership.Role.CLINICIAN),
        },
        status=status,
    )


@login_required
@require_GET
def patient_studies(request: HttpRequest, patient_id: int) -> HttpResponse:
    from ehr.selectors import patient_for

    patient = patient_for(user=request.user, patient_id=patient_id)
    studies = selectors.studies_visible_to(request.user).filter(patient=patient)
    return render(
        request,
        "imaging/patient_studies.html",
        {
            "patient": patient,
            "page": _listed(request.user, studies, request.GET.get("page", 1)),
            "pager_query": "",
        },
    )


@login_required
@require_GET
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = _for_display(selectors.study_for(user=request.user, study_id=study_id))
    viewers = selectors.study_view_count(study)
    return render(
        request,
        "imaging/study_detail.html",
        {
            "study": study,
            "series_list": selectors.series_of(study),
            "viewers": viewers,
            "view_total": sum(viewer["times"] for viewer in viewers),
            "can_change": access.can(request.user, access.CHANGE, study),
        },
    )


def _frame_count(series: Series) -> list[dict]:
    return [
        {"id": instance.pk, "frames": instance.number_of_frames}
        for instance in series.instances.filter(rows__isnull=False).order_by(
            "instance_number", "id"
        )
    ]


def _default_window(series: Series) -> list[float] | None:
    """The window (center, width) of the series' first image, from the indexed metadata: the
    viewer starts a window drag from it."""
    instance = series.instances.filter(rows__isnull=False).order_by("instance_number").first()
    if instance is None:
        return None
    try:
        center = float(instance.metadata["00281050"]["Value"][0])
        width = float(instance.metadata["00281051"]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return [center, width] if width > 0 else None


@login_required
@require_GET
def viewer(request: HttpRequest, study_id: int) -> HttpResponse:
    study = _for_display(
        selectors.study_for(user=request.user, study_id=study_id, detail={"viewer": True})
    )
    series_list = list(selectors.series_of(study))
    data = {
        "frameUrl": reverse("imaging:frame", args=[0, 1]).replace("/0/frames/1.jpg", ""),
        "sizes": FRAME_SIZES,
        "presets": [
            {"key": key, "label": str(label), "window": window} for key, label, window in PRESETS
        ],
        "series": [
            {
                "id": series.pk,
                "label": str(series),
                "modality": series.modality,
                "instances": _frame_count(series),
                "window": _default_window(series),
                "video": reverse("imaging:series-video", args=[series.pk]) if series.video else "",
            }
            for series in series_list
        ],
    }
    return render(
        request,
        "imaging/viewer.html",
        {
            "study": study,
            "series_list": series_list,
            "viewer_data": data,
            "presets": PRESETS,
        },
    )


def _readable_series(user: User, series: Series | None) -> Series:
    """The series if `user` may read its study, checked without an audit event (the page that
    shows it audited the read); a refusal is audited, and answers 404."""
    if series is None or not access.can(user, access.VIEW, series.study):
        selectors.study_for(user=user, study_id=series.study_id if series else 0)
        raise Http404  # study_for raised already; this line is for the type checker
    return series


class BadParameter(ValueError):
    """A frame request parameter that cannot be used; the message says which."""


def _window(value: str) -> tuple[float, float] | None:
    if not value:
        return None
    try:
        center, width = (float(part) for part in value.split(","))
    except ValueError as error:
        raise BadParameter(_("window must be center,width, e.g. 40,400")) from error
    if not 0 < width <= 1e6 or abs(center) > 1e6:
        raise BadParameter(_("window width must be a positive number"))
    return center, width


def _size(value: str) -> int:
    try:
        wanted = int(value or 512)
    except ValueError as error:
        raise BadParameter(_("size must be a number of pixels")) from error
    return next((size for size in FRAME_SIZES if size >= wanted), FRAME_SIZES[-1])


def _storage_file(path: str, content_type: str) -> FileResponse:
    if not path or not default_storage.exists(path):
        raise Http404("Not rendered yet")
    response = FileResponse(default_storage.open(path, "rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_GET
def frame(request: HttpRequest, instance_id: int, frame_number: int) -> HttpResponse:
    instance = (
        Instance.objects.select_related("series__study", "received_file")
        .filter(pk=instance_id)
        .first()
    )
    series = _readable_series(request.user, instance.series if instance else None)
    try:
        size, window = _size(request.GET.get("size", "")), _window(request.GET.get("window", ""))
    except BadParameter as error:
        return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")
    selectors.record_series_opened(
        user=request.user, session_key=request.session.session_key or "", series=series
    )
    try:
        content = rendered_frame(
            instance=instance,
            frame=frame_number,
            window=window,
            viewport=(size, size),
            keep_later=True,  # scrolling does not wait for the cache
        )
    except NotRenderable as error:
        return HttpResponse(str(error), status=404, content_type="text/plain; charset=utf-8")
    response = HttpResponse(content, content_type="image/jpeg")
    # The same URL always gives the same picture: let a slow link keep it.
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _series(series_id: int) -> Series | None:
    return Series.objects.select_related("study").filter(pk=series_id).first()


@login_required
@require_GET
def series_thumbnail(request: HttpRequest, series_id: int) -> FileResponse:
    series = _readable_series(request.user, _series(series_id))
    return _storage_file(series.thumbnail, "image/jpeg")


@login_required
@require_GET
def series_preview(request: HttpRequest, series_id: int) -> FileResponse:
    series = _readable_series(request.user, _series(series_id))
    return _storage_file(series.preview, "image/jpeg")


BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(request: HttpRequest, path: str, content_type: str) -> HttpResponse | None:
    """A 206 answer to a single byte range (RFC 9110 14.2): Safari plays video only from a
    server that honours ranges, and seeking in a long loop should not restart the download."""
    match = BYTE_RANGE.match(request.headers.get("Range", "").strip())
    if match is None or not (match[1] or match[2]):
        return None
    size = default_storage.size(path)
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    else:  # "bytes=-N": the last N bytes
        start, end = max(size - int(match[2]), 0), size - 1
    if start > end or start >= size:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    with default_storage.open(path, "rb") as stream:
        stream.seek(start)
        content = stream.read(end - start + 1)
    response = HttpResponse(content, status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_GET
def series_video(request: HttpRequest, series_id: int) -> HttpResponse:
    series = _readable_series(request.user, _series(series_id))
    selectors.record_series_opened(
        user=request.user, session_key=request.session.session_key or "", series=series
    )
    if series.video and default_storage.exists(series.video):
        partial = _byte_range(request, series.video, "video/mp4")
        if partial is not None:
            return partial
    response = _storage_file(series.video, "video/mp4")
    response["Accept-Ranges"] = "bytes"
    return response
