"""HL7 edges: `POST /hl7/oru` for lab systems, and the review queue of lab messages."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts import access
from accounts.api_auth import BearerTokenAuthentication
from accounts.middleware import client_ip
from accounts.request_context import request_context
from ehr.hl7 import selectors
from ehr.hl7.parsing import normalize_segments
from ehr.hl7.server import decode_block
from ehr.models import LabMessage, validate_pin
from ehr.services.lab_results import attach_lab_message, may_send_lab_results, receive_oru

# application/hl7-v2 is the registered type (RFC 6910 era); the others are what real
# interface engines and curl send.
ACCEPTED_CONTENT_TYPES = {"application/hl7-v2", "x-application/hl7-v2+er7", "text/plain"}
ACK_CONTENT_TYPE = "application/hl7-v2; charset=utf-8"


class MaySendLabResults(BasePermission):
    message = "Only a lab system account (clinician or coordinator role) may send results."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return may_send_lab_results(request.user)


class OruEndpoint(APIView):
    """An ORU^R01 as the request body; the ACK as the response body (200 for AA, AE and AR
    alike: the verdict is in MSA-1, as HL7 over HTTP has it)."""

    # The token only: no session, hence no CSRF check and no cookie-carrying browser.
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated, MaySendLabResults]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> HttpResponse:
        content_type = (request.content_type or "").split(";", 1)[0].strip().lower()
        if content_type not in ACCEPTED_CONTENT_TYPES:
            return HttpResponse(
                "Send the message as application/hl7-v2 or text/plain.\n",
                status=415,
                content_type="text/plain; charset=utf-8",
            )
        charset = request.content_params.get("charset", "")
        body = request.body
        try:
            raw = body.decode(charset) if charset else decode_block(body)
        except (LookupError, UnicodeDecodeError):
            raw = decode_block(body)
        with request_context(ip_address=client_ip(request), channel="hl7"):
            _, ack = receive_oru(
                raw=raw, channel=LabMessage.Channel.HTTP, sender=request.user.email
            )
        return HttpResponse(ack, content_type=ACK_CONTENT_TYPE)


class AttachForm(forms.Form):
    pin = forms.CharField(
        label=gettext_lazy("Personal number (PIN) of the patient"),
        max_length=14,
        validators=[validate_pin],
    )


@login_required
def message_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    page = selectors.lab_message_page(
        user=request.user, status=status, page=request.GET.get("page", 1)
    )
    return render(
        request,
        "ehr/hl7_message_list.html",
        {
            "page": page,
            "status": status,
            "statuses": LabMessage.Status.choices,
            "pager_query": f"status={status}" if status else "",
        },
    )


def _detail(
    request: HttpRequest, lab_message: LabMessage, form: AttachForm, status: int = 200
) -> HttpResponse:
    can_attach = lab_message.status == LabMessage.Status.UNMATCHED and access.can(
        request.user, access.CHANGE, lab_message
    )
    return render(
        request,
        "ehr/hl7_message_detail.html",
        {
            "lab_message": lab_message,
            "segments": normalize_segments(lab_message.raw).split("\r"),
            "form": form,
            "can_attach": can_attach,
        },
        status=status,
    )


@login_required
def message_detail(request: HttpRequest, lab_message_id: int) -> HttpResponse:
    lab_message = selectors.lab_message_for(user=request.user, lab_message_id=lab_message_id)
    return _detail(request, lab_message, AttachForm())


@login_required
@require_POST
def message_attach(request: HttpRequest, lab_message_id: int) -> HttpResponse:
    lab_message = selectors.lab_message_for(user=request.user, lab_message_id=lab_message_id)
    form = AttachForm(request.POST)
    if form.is_valid():
        try:
            lab_message = attach_lab_message(
                lab_message=lab_message, user=request.user, pin=form.cleaned_data["pin"]
            )
        except ValidationError as error:
            form.add_error(None, error)
    if not form.is_valid():
        return _detail(request, lab_message, form, status=400)
    count = lab_message.observation_count
    messages.success(
        request,
        ngettext(
            "Attached to %(patient)s: %(count)d result stored.",
            "Attached to %(patient)s: %(count)d results stored.",
            count,
        )
        % {"patient": lab_message.patient.full_name, "count": count},
    )
    # Back to the queue: once attached, the message follows its patient (ehr/policies.py) and
    # a coordinator of another region may no longer see it.
    return redirect("hl7:message-list")
