"""Pages of scheduling: the specialist's availability, booking / rescheduling / cancelling a
session from the referral page, and the user's notifications."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts import access
from consults import selectors
from consults.models import Appointment, AvailabilityException, AvailabilityRule, Participant
from consults.services import notifications, scheduling

WEEKDAYS = [
    (0, gettext_lazy("Monday")),
    (1, gettext_lazy("Tuesday")),
    (2, gettext_lazy("Wednesday")),
    (3, gettext_lazy("Thursday")),
    (4, gettext_lazy("Friday")),
    (5, gettext_lazy("Saturday")),
    (6, gettext_lazy("Sunday")),
]


class RuleForm(forms.Form):
    weekday = forms.TypedChoiceField(label=gettext_lazy("Day"), choices=WEEKDAYS, coerce=int)
    start_time = forms.TimeField(
        label=gettext_lazy("From"), widget=forms.TimeInput({"type": "time"})
    )
    end_time = forms.TimeField(
        label=gettext_lazy("Until"), widget=forms.TimeInput({"type": "time"})
    )
    slot_minutes = forms.IntegerField(label=gettext_lazy("Slot length (minutes)"), initial=30,
                                      min_value=5, max_value=240)  # fmt: skip
    valid_from = forms.DateField(label=gettext_lazy("Valid from"), required=False,
                                 widget=forms.DateInput({"type": "date"}))  # fmt: skip
    valid_until = forms.DateField(label=gettext_lazy("Valid until"), required=False,
                                  widget=forms.DateInput({"type": "date"}))  # fmt: skip


# Entered and shown in the user's own time zone (the middleware activates it).
LOCAL_MOMENT = forms.DateTimeInput({"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class ExceptionForm(forms.Form):
    starts_at = forms.DateTimeField(label=gettext_lazy("From"), widget=LOCAL_MOMENT)
    ends_at = forms.DateTimeField(label=gettext_lazy("Until"), widget=LOCAL_MOMENT)
    reason = forms.CharField(label=gettext_lazy("Reason"), required=False, max_length=200)


def _availability_context(request: HttpRequest, **forms_: forms.Form) -> dict:
    user = request.user
    return {
        "rules": AvailabilityRule.objects.filter(specialist=user),
        "exceptions": AvailabilityException.objects.filter(specialist=user),
        "rule_form": forms_.get("rule_form") or RuleForm(),
        "exception_form": forms_.get("exception_form") or ExceptionForm(),
        "weekdays": dict(WEEKDAYS),
        "time_zone": scheduling.zone_of(user).key,
    }


@login_required
def availability(request: HttpRequest) -> HttpResponse:
    """The logged-in specialist's weekly hours and absences, in their own time zone."""
    user = request.user
    if access.rows_allowed(user, access.CREATE, AvailabilityRule) == access.NOTHING:
        raise PermissionDenied
    if request.method != "POST":
        return render(request, "consults/availability.html", _availability_context(request))
    form_: forms.Form | None = None
    try:
        if "add_rule" in request.POST:
            form_ = RuleForm(request.POST)
            if not form_.is_valid():
                raise ValidationError(_("Check the hours."))
            scheduling.add_availability_rule(specialist=user, **form_.cleaned_data)
        elif "add_exception" in request.POST:
            form_ = ExceptionForm(request.POST)
            if not form_.is_valid():
                raise ValidationError(_("Check the dates."))
            scheduling.add_availability_exception(specialist=user, **form_.cleaned_data)
        elif "delete_rule" in request.POST:
            rule = get_object_or_404(AvailabilityRule, pk=request.POST["delete_rule"])
            scheduling.delete_availability_rule(specialist=user, rule=rule)
        elif "delete_exception" in request.POST:
            exception = get_object_or_404(
                AvailabilityException, pk=request.POST["delete_exception"]
            )
            scheduling.delete_availability_exception(specialist=user, exception=exception)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        key = "rule_form" if isinstance(form_, RuleForm) else "exception_form"
        context = _availability_context(request, **({key: form_} if form_ else {}))
        return render(request, "consults/availability.html", context, status=400)
    return redirect("consults:availability")


def _parse_moment(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(_("Choose a slot.")) from None
    if moment.tzinfo is None:
        raise ValidationError(_("Choose a slot."))
    return moment


def _guests(request: HttpRequest) -> list[scheduling.Guest]:
    name = request.POST.get("guest_name", "").strip()
    if not name:
        return []
    return [
        scheduling.Guest(
            role=request.POST.get("guest_role", Participant.Role.FAMILY),
            name=name,
            email=request.POST.get("guest_email", ""),
            phone=request.POST.get("guest_phone", ""),
        )
    ]


@login_required
@require_POST
def referral_book(request: HttpRequest, referral_id: int) -> HttpResponse:
    referral = selectors.referral_for(user=request.user, referral_id=referral_id)
    try:
        scheduling.book_appointment(
            referral=referral,
            booked_by=request.user,
            starts_at=_parse_moment(request.POST.get("starts_at", "")),
            kind=request.POST.get("kind", ""),
            participants=_guests(request),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The session is booked; everyone is invited."))
    return redirect(referral)


def _appointment(request: HttpRequest, appointment_id: int) -> Appointment:
    return scheduling.appointment_for(user=request.user, appointment_id=appointment_id)


@login_required
@require_POST
def appointment_reschedule(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = _appointment(request, appointment_id)
    try:
        scheduling.reschedule_appointment(
            appointment=appointment,
            actor=request.user,
            starts_at=_parse_moment(request.POST.get("starts_at", "")),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The session is moved; everyone is told."))
    return redirect(appointment.referral)


@login_required
@require_POST
def appointment_cancel(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = _appointment(request, appointment_id)
    try:
        scheduling.cancel_appointment(
            appointment=appointment, actor=request.user, reason=request.POST.get("reason", "")
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The session is cancelled; everyone is told."))
    return redirect(appointment.referral)


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    """The user's notifications, newest first; POST marks them all read."""
    if request.method == "POST":
        notifications.mark_notifications_read(user=request.user)
        return redirect("consults:notifications")
    return render(
        request,
        "consults/notifications.html",
        {
            "notifications": notifications.notifications_for(request.user),
            "unread_count": notifications.unread_notifications_count(request.user),
        },
    )
