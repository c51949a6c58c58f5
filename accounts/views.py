from __future__ import annotations

import csv
import time
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language as django_set_language
from django_otp import login as otp_login

from accounts import selectors
from accounts.filters import AuditEventFilter
from accounts.forms import (
    DisableTwoFactorForm,
    EmailAuthenticationForm,
    LoginCodeForm,
    ProfileForm,
)
from accounts.models import AuditEvent, User
from accounts.services import two_factor
from accounts.services.audit import record_event
from accounts.services.users import update_profile

PENDING_KEY = "telemed_pending_two_factor"


class LoginView(auth_views.LoginView):
    """E-mail and password; then, for a user with an authenticator, a code (LoginCodeView)."""

    form_class = EmailAuthenticationForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: EmailAuthenticationForm) -> HttpResponse:
        user = form.get_user()
        if two_factor.has_two_factor(user):
            self.request.session[PENDING_KEY] = {
                "user_id": user.pk,
                "backend": user.backend,
                "started": time.time(),
                "next": self.get_success_url(),
            }
            return redirect("accounts:login-code")
        return super().form_valid(form)


def _pending_login(request: HttpRequest) -> tuple[User, dict[str, Any]] | None:
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending["started"] > settings.TWO_FACTOR_PENDING_SECONDS:
        request.session.pop(PENDING_KEY, None)
        return None
    user = get_user_model().objects.filter(pk=pending["user_id"], is_active=True).first()
    return (user, pending) if user else None


def login_code(request: HttpRequest) -> HttpResponse:
    """Second step of log-in: the current code of the user's authenticator app."""
    found = _pending_login(request)
    if found is None:
        messages.info(request, _("Your log-in took too long. Please start again."))
        return redirect("accounts:login")
    user, pending = found
    credentials = {"username": user.email}
    if AxesProxyHandler.is_locked(request, credentials):
        return render(request, "accounts/locked_out.html", status=429)
    form = LoginCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = two_factor.verify_login_code(user=user, token=form.cleaned_data["token"])
        if device is not None:
            del request.session[PENDING_KEY]
            login(request, user, backend=pending["backend"])
            otp_login(request, device)
            return redirect(pending["next"])
        # A wrong code counts towards the lock-out like a wrong password.
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if AxesProxyHandler.is_locked(request, credentials):
            return render(request, "accounts/locked_out.html", status=429)
        form.add_error("token", _("That code is not right. Check the time on your phone."))
    return render(request, "accounts/login_code.html", {"form": form, "pending_user": user})


@login_required
def two_factor_settings(request: HttpRequest) -> HttpResponse:
    """Turn two-factor authentication on (scan, confirm) or off."""
    user = request.user
    device = two_factor.confirmed_device(user)
    code_form = LoginCodeForm()
    disable_form = DisableTwoFactorForm()
    if request.method == "POST":
        step = request.POST.get("step")
        if step == "start":
            two_factor.start_totp_enrolment(user=user)
        elif step == "confirm":
            code_form = LoginCodeForm(request.POST)
            if code_form.is_valid():
                try:
                    device = two_factor.confirm_totp_enrolment(
                        user=user, token=code_form.cleaned_data["token"]
                    )
                except ValidationError as error:
                    code_form.add_error("token", error)
                else:
                    otp_login(request, device)
                    messages.success(request, _("Two-factor authentication is on."))
                    return redirect("accounts:two-factor")
        elif step == "disable" and not (
            settings.TWO_FACTOR_REQUIRED_FOR_STAFF and user.is_staff_role
        ):
            disable_form = DisableTwoFactorForm(request.POST)
            if disable_form.is_valid():
                try:
                    two_factor.disable_two_factor(
                        user=user, password=disable_form.cleaned_data["password"]
                    )
                except ValidationError as error:
                    disable_form.add_error("password", error)
                else:
                    messages.success(request, _("Two-factor authentication is off."))
                    return redirect("accounts:two-factor")
    pending = None if device else two_factor.pending_device(user)
    context = {
        "device": device,
        "pending": pending,
        "qr_svg": two_factor.qr_code_svg(pending) if pending else "",
        "manual_key": two_factor.manual_entry_key(pending) if pending else "",
        "code_form": code_form,
        "disable_form": disable_form,
        "is_required": settings.TWO_FACTOR_REQUIRED_FOR_STAFF and user.is_staff_role,
    }
    return render(request, "accounts/two_factor.html", context)


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        update_profile(user=request.user, **form.cleaned_data)
        messages.success(request, _("Your settings are saved."))
        response = redirect("accounts:profile")
        if form.cleaned_data["language"]:
            response.set_cookie(settings.LANGUAGE_COOKIE_NAME, form.cleaned_data["language"])
        return response
    return render(request, "accounts/profile.html", {"form": form})


@require_POST
def set_language(request: HttpRequest) -> HttpResponseBase:
    """The language switcher: the cookie for everyone, and the profile of a logged-in user."""
    response = django_set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language in dict(settings.LANGUAGES):
        update_profile(user=request.user, language=language)
    return response


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not selectors.can_read_audit_log(request.user):
        raise PermissionDenied
    event_filter = AuditEventFilter(
        request.GET or None, queryset=selectors.audit_events_visible_to(request.user)
    )
    page = Paginator(event_filter.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "accounts/audit_log.html",
        {"filter": event_filter, "page": page, "query": query.urlencode()},
        status=200 if event_filter.is_bound is False or event_filter.is_valid() else 400,
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


AUDIT_CSV_COLUMNS = [
    "at",
    "actor_label",
    "actor_roles",
    "action",
    "outcome",
    "object_type",
    "object_id",
    "object_label",
    "patient_id",
    "region",
    "ip_address",
    "channel",
]


@login_required
def audit_log_export(request: HttpRequest) -> HttpResponse:
    if not selectors.can_read_audit_log(request.user):
        raise PermissionDenied
    event_filter = AuditEventFilter(
        request.GET or None, queryset=selectors.audit_events_exportable_by(request.user)
    )
    if event_filter.is_bound and not event_filter.is_valid():
        return render(request, "accounts/audit_log.html", {"filter": event_filter}, status=400)
    events = event_filter.qs
    filters = event_filter.form.cleaned_data if event_filter.is_bound else {}
    record_event(
        actor=request.user,
        action=AuditEvent.Action.EXPORT,
        detail={
            "what": "audit log",
            "filters": {key: str(value) for key, value in filters.items() if value},
        },
    )
    writer = csv.writer(_Echo())

    def rows() -> Any:
        yield writer.writerow(AUDIT_CSV_COLUMNS)
        for event in events.iterator(chunk_size=2000):
            values = [getattr(event, column) for column in AUDIT_CSV_COLUMNS]
            values[0] = timezone.localtime(event.at).isoformat()
            yield writer.writerow(["" if value is None else value for value in values])

    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response


@login_required
def organizations(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/organizations.html",
        {"organizations": selectors.organizations_visible_to(request.user)},
    )


password_change = auth_views.PasswordChangeView.as_view(
    template_name="accounts/password_change.html",
    success_url=reverse_lazy("accounts:password-change-done"),
)
password_change_done = auth_views.PasswordChangeDoneView.as_view(
    template_name="accounts/password_change_done.html"
)
password_reset = auth_views.PasswordResetView.as_view(
    template_name="accounts/password_reset.html",
    email_template_name="accounts/email/password_reset.txt",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password-reset-done"),
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password-reset-complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)
logout = auth_views.LogoutView.as_view()
