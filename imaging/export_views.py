"""Pages of study export: ask for a ZIP with a DICOMDIR, follow it, download it."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from imaging.models import Study, StudyExport
from imaging.selectors import studies_visible_to, study_for
from imaging.services import exports


class ExportForm(forms.Form):
    anonymized = forms.BooleanField(
        label=gettext_lazy("Anonymize (DICOM PS3.15 Basic Profile)"), required=False
    )


def _block_context(request: HttpRequest, study: Study, next_url: str = "") -> dict:
    may_identify = exports.may_export_identified(request.user, study)
    recent = list(exports.exports_of(study=study, user=request.user))
    return {
        "study": study,
        "may_export_identified": may_identify,
        "forced_reason": exports.FORCED_ANONYMIZATION_REASON,
        "burned_in_warning": (
            exports.BURNED_IN_WARNING if exports.has_burned_in_annotation(study) else ""
        ),
        "exports": recent,
        "is_pending": any(e.status == StudyExport.Status.PENDING for e in recent),
        "next_url": next_url,
    }


def _next_url(request: HttpRequest, study: Study) -> str:
    """Where to go back to: the page the block was shown on, if it is one of ours."""
    target = request.POST.get("next", "") or request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("imaging:study-export", args=[study.pk])


@login_required
def study_export(request: HttpRequest, study_id: int) -> HttpResponse:
    """GET: the export page (audited as a view of the study). POST: ask for an export."""
    if request.method == "POST":
        study = study_for(user=request.user, study_id=study_id)
        form = ExportForm(request.POST)
        anonymized = form.is_valid() and form.cleaned_data["anonymized"]
        export = exports.request_export(study=study, user=request.user, anonymized=anonymized)
        messages.info(
            request,
            _("The anonymized export is being prepared.")
            if export.is_anonymized
            else _("The export is being prepared."),
        )
        # Back to the page the block was on, with the block open to show the export.
        return redirect(f"{_next_url(request, study)}#study-export-{study.pk}")
    study = study_for(user=request.user, study_id=study_id)
    return render(request, "imaging/export_page.html", _block_context(request, study))


@login_required
def study_export_block(request: HttpRequest, study_id: int) -> HttpResponse:
    """The export block alone, fetched by the study page and refreshed while an export is
    being prepared. It shows only the user's own exports, no patient data, so it checks
    access without writing an audit event on every refresh."""
    study = studies_visible_to(request.user).filter(pk=study_id).first()
    if study is None:
        raise Http404("No such study")
    return render(
        request,
        "imaging/export_block.html",
        _block_context(request, study, _next_url(request, study)),
    )


@login_required
def export_download(request: HttpRequest, export_id: int) -> FileResponse:
    export = exports.export_for_download(user=request.user, export_id=export_id)
    suffix = "anon" if export.is_anonymized else "identified"
    return FileResponse(
        exports.open_export(export),
        as_attachment=True,
        filename=f"study-{export.study_id}-{suffix}.zip",
        content_type="application/zip",
    )
