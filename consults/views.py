from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import access
from consults import selectors
from consults.forms import QueueFilterForm, ReasonForm, ReferralForm, ReportForm, TriageForm
from consults.models import ConsultReport, Referral
from consults.policies import REPORT, TRIAGE
from consults.services import referrals as workflow
from ehr.selectors import patient_for


@login_required
def referral_list(request: HttpRequest) -> HttpResponse:
    referrals = selectors.referrals_visible_to(request.user).order_by("-created_at")[:200]
    return render(request, "consults/referral_list.html", {"referrals": referrals})


@login_required
def referral_create(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = patient_for(user=request.user, patient_id=patient_id, action=access.CHANGE)
    form = ReferralForm(request.POST or None, patient=patient)
    if request.method == "POST" and form.is_valid():
        try:
            referral = workflow.create_referral(
                clinician=request.user, patient=patient, **form.cleaned_data
            )
            if "submit" in request.POST:
                workflow.submit_referral(referral=referral, clinician=request.user)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request,
                _("The referral is sent to the regional centre.")
                if referral.status == Referral.Status.SUBMITTED
                else _("The draft is saved."),
            )
            return redirect(referral)
    return render(
        request,
        "consults/referral_form.html",
        {"form": form, "patient": patient},
        status=400 if request.method == "POST" else 200,
    )


@login_required
def referral_detail(request: HttpRequest, referral_id: int) -> HttpResponse:
    referral = selectors.referral_for(user=request.user, referral_id=referral_id)
    return render(request, "consults/referral_detail.html", _detail_context(request, referral))


def _detail_context(request: HttpRequest, referral: Referral, **forms: Any) -> dict[str, Any]:
    user = request.user
    report = ConsultReport.objects.filter(referral=referral).first()
    can_triage = access.can(user, TRIAGE, referral)
    can_report = access.can(user, REPORT, referral)
    moves = workflow.ALLOWED_MOVES[referral.status]
    now = timezone.now()
    context = {
        "startable": [
            appointment
            for appointment in referral.appointments.filter(status="booked", specialist=user)
            if appointment.is_joinable_at(now) and referral.status == Referral.Status.SCHEDULED
        ],
        "can_cancel": Referral.Status.CANCELLED in moves
        and access.can(user, access.CHANGE, referral),
        "can_decline": Referral.Status.DECLINED in moves and can_triage,
        "referral": referral,
        "report": report,
        "events": referral.events.select_related("actor"),
        "can_change": access.can(user, access.CHANGE, referral),
        "can_triage": can_triage and referral.status == Referral.Status.SUBMITTED,
        "can_report": can_report
        and referral.status
        in (Referral.Status.TRIAGED, Referral.Status.SCHEDULED, Referral.Status.IN_SESSION),
        "reason_form": forms.get("reason_form") or ReasonForm(),
    }
    if context["can_triage"]:
        context["triage_form"] = forms.get("triage_form") or TriageForm(
            specialists=workflow.specialists_for(referral.specialty)
        )
    if context["can_report"]:
        context["report_form"] = forms.get("report_form") or ReportForm(instance=report)
    return context


def _act(
    request: HttpRequest, referral_id: int, action: Callable[[Referral], Any], **forms: Any
) -> HttpResponse:
    referral = selectors.referral_for(user=request.user, referral_id=referral_id)
    try:
        action(referral)
    except PermissionDenied:
        raise
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        referral.refresh_from_db()
        context = _detail_context(request, referral, **forms)
        return render(request, "consults/referral_detail.html", context, status=400)
    return redirect(referral)


@login_required
@require_POST
def referral_submit(request: HttpRequest, referral_id: int) -> HttpResponse:
    return _act(request, referral_id, lambda referral: workflow.submit_referral(
        referral=referral, clinician=request.user))  # fmt: skip


@login_required
@require_POST
def referral_triage(request: HttpRequest, referral_id: int) -> HttpResponse:
    referral = selectors.referral_for(user=request.user, referral_id=referral_id)
    form = TriageForm(request.POST, specialists=workflow.specialists_for(referral.specialty))

    def triage(referral: Referral) -> None:
        if not form.is_valid():
            raise ValidationError(_("Choose a specialist, a priority and how."))
        workflow.triage_referral(referral=referral, coordinator=request.user, **form.cleaned_data)

    return _act(request, referral_id, triage, triage_form=form)


def _with_reason(
    request: HttpRequest, referral_id: int, service: Callable[..., Any], who: str
) -> HttpResponse:
    form = ReasonForm(request.POST)

    def act(referral: Referral) -> None:
        reason = form.data.get("reason", "")
        service(referral=referral, reason=reason, **{who: request.user})

    return _act(request, referral_id, act, reason_form=form)


@login_required
@require_POST
def referral_decline(request: HttpRequest, referral_id: int) -> HttpResponse:
    return _with_reason(request, referral_id, workflow.decline_referral, "coordinator")


@login_required
@require_POST
def referral_cancel(request: HttpRequest, referral_id: int) -> HttpResponse:
    return _with_reason(request, referral_id, workflow.cancel_referral, "clinician")


@login_required
@require_POST
def referral_report(request: HttpRequest, referral_id: int) -> HttpResponse:
    """Save the report; with `sign`, sign it too."""
    form = ReportForm(request.POST)

    def report(referral: Referral) -> None:
        if not form.is_valid():
            raise ValidationError(_("The report is not complete."))
        workflow.save_report(referral=referral, specialist=request.user, **form.cleaned_data)
        if "sign" in request.POST:
            workflow.sign_report(referral=referral, specialist=request.user)

    return _act(request, referral_id, report, report_form=form)


@login_required
@require_POST
def referral_close(request: HttpRequest, referral_id: int) -> HttpResponse:
    return _act(request, referral_id, lambda referral: workflow.close_referral(
        referral=referral, clinician=request.user))  # fmt: skip


@login_required
def triage_queue(request: HttpRequest) -> HttpResponse:
    if access.rows_allowed(request.user, TRIAGE, Referral) == access.NOTHING:
        raise PermissionDenied
    form = QueueFilterForm(request.GET or None, regions=access.coordinated_regions(request.user))
    filters = form.cleaned_data if form.is_valid() else {}
    queue = selectors.triage_queue(
        user=request.user,
        organization_id=filters["organization"].pk if filters.get("organization") else None,
        specialty_id=filters["specialty"].pk if filters.get("specialty") else None,
        status=filters.get("status") or None,
    )
    return render(request, "consults/triage_queue.html", {"queue": queue, "form": form})


@login_required
@require_POST
def session_start(request: HttpRequest, appointment_id: int) -> HttpResponse:
    from consults.services.scheduling import appointment_for
    from consults.services.sessions import start_session

    appointment = appointment_for(user=request.user, appointment_id=appointment_id)
    try:
        start_session(appointment=appointment, specialist=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(appointment.referral)
    return redirect("consults:session", appointment_id=appointment.pk)
