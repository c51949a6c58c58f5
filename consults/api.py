"""REST API of consults: referrals and their workflow, specialists' free slots, sessions.

Thin: each view parses its input, calls one service or selector (which check access through
accounts.access and audit reads of patient data) and serializes the result. A refused rule
(Django's ValidationError) answers 400 with its messages; a refused permission 403; a
referral or appointment the user may not see 404.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ValidationError as RuleRefused
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.models import Membership, Specialty, User
from accounts.services.audit import record_patient_reads
from consults import selectors
from consults.models import Appointment, AvailabilityRule, Participant, Referral
from consults.services import referrals as workflow
from consults.services import scheduling
from ehr.selectors import patient_for

T = TypeVar("T")


def _apply(service: Callable[[], T]) -> T:
    try:
        return service()
    except RuleRefused as error:
        raise ValidationError({"detail": error.messages}) from None


# A pattern rather than an enum: the schema generator names enums after the field, another
# app's "kind" is an enum already, and the collision would be a warning (the schema must be
# warning-free; ENUM_NAME_OVERRIDES lives in settings, which this module does not own).
@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(" + "|".join(Appointment.Kind.values) + ")$",
        "description": ", ".join(Appointment.Kind.values),
    }
)
class AppointmentKindField(serializers.ChoiceField):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(choices=Appointment.Kind.choices, **kwargs)


class ParticipantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Participant
        fields = ["id", "role", "name", "user_id", "is_active"]


class AppointmentSerializer(serializers.ModelSerializer):
    kind = AppointmentKindField(read_only=True)
    participants = ParticipantSerializer(many=True, read_only=True)

    class Meta:
        model = Appointment
        fields = ["id", "referral_id", "specialist_id", "kind", "starts_at", "ends_at",
                  "status", "cancel_reason", "participants"]  # fmt: skip


class ReferralSerializer(serializers.ModelSerializer):
    specialty = serializers.SlugRelatedField(slug_field="code", read_only=True)
    patient_name = serializers.CharField(source="patient.full_name", read_only=True)

    class Meta:
        model = Referral
        fields = ["id", "patient_id", "patient_name", "referring_organization_id",
                  "referring_clinician_id", "region", "specialty", "urgency", "question",
                  "status", "specialist_id", "mode", "priority", "created_at", "submitted_at",
                  "triaged_at", "closed_at"]  # fmt: skip


class ReferralCreateSerializer(serializers.Serializer):
    patient_id = serializers.IntegerField()
    specialty = serializers.SlugRelatedField(slug_field="code", queryset=Specialty.objects.all())
    urgency = serializers.ChoiceField(choices=Referral.Urgency.choices, default="routine")
    question = serializers.CharField()


class TriageSerializer(serializers.Serializer):
    specialist_id = serializers.IntegerField()
    priority = serializers.IntegerField(min_value=1, max_value=9)
    mode = serializers.ChoiceField(choices=Referral.Mode.choices)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField()


class GuestSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=[Participant.Role.INTERPRETER, Participant.Role.FAMILY])
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField(required=False, default="")
    phone = serializers.CharField(max_length=32, required=False, default="")


class BookingSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField(help_text="the start of one of the free slots")
    kind = AppointmentKindField()
    guests = GuestSerializer(many=True, required=False, default=list)


class SlotSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


def _referral(request: Request, referral_id: int) -> Referral:
    return selectors.referral_for(user=request.user, referral_id=referral_id)


class ReferralList(APIView):
    @extend_schema(responses=ReferralSerializer(many=True), operation_id="referrals_list")
    def get(self, request: Request) -> Response:
        """Referrals the user may see (the newest 200); each listed patient is audited."""
        referrals = list(
            selectors.referrals_visible_to(request.user)
            .select_related("patient__organization")
            .order_by("-created_at")[:200]
        )
        record_patient_reads(actor=request.user, patients={r.patient for r in referrals})
        return Response(ReferralSerializer(referrals, many=True).data)

    @extend_schema(
        request=ReferralCreateSerializer,
        responses={201: ReferralSerializer},
        operation_id="referrals_create",
    )
    def post(self, request: Request) -> Response:
        """A draft referral of a patient of the clinician's organization."""
        data = ReferralCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        patient = patient_for(
            user=request.user, patient_id=fields.pop("patient_id"), action=access.CHANGE
        )
        referral = _apply(
            lambda: workflow.create_referral(clinician=request.user, patient=patient, **fields)
        )
        return Response(ReferralSerializer(referral).data, status=status.HTTP_201_CREATED)


class ReferralDetail(APIView):
    @extend_schema(responses=ReferralSerializer, operation_id="referrals_retrieve")
    def get(self, request: Request, referral_id: int) -> Response:
        return Response(ReferralSerializer(_referral(request, referral_id)).data)


class ReferralSubmit(APIView):
    @extend_schema(request=None, responses=ReferralSerializer, operation_id="referrals_submit")
    def post(self, request: Request, referral_id: int) -> Response:
        referral = _referral(request, referral_id)
        _apply(lambda: workflow.submit_referral(referral=referral, clinician=request.user))
        return Response(ReferralSerializer(referral).data)


class ReferralTriage(APIView):
    @extend_schema(
        request=TriageSerializer, responses=ReferralSerializer, operation_id="referrals_triage"
    )
    def post(self, request: Request, referral_id: int) -> Response:
        referral = _referral(request, referral_id)
        data = TriageSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        specialist = get_object_or_404(User, pk=fields.pop("specialist_id"))
        _apply(
            lambda: workflow.triage_referral(
                referral=referral, coordinator=request.user, specialist=specialist, **fields
            )
        )
        return Response(ReferralSerializer(referral).data)


class ReferralCancel(APIView):
    @extend_schema(
        request=ReasonSerializer, responses=ReferralSerializer, operation_id="referrals_cancel"
    )
    def post(self, request: Request, referral_id: int) -> Response:
        referral = _referral(request, referral_id)
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data["reason"]
        _apply(
            lambda: workflow.cancel_referral(
                referral=referral, clinician=request.user, reason=reason
            )
        )
        return Response(ReferralSerializer(referral).data)


class ReferralBook(APIView):
    @extend_schema(
        request=BookingSerializer,
        responses={201: AppointmentSerializer},
        operation_id="referrals_book",
    )
    def post(self, request: Request, referral_id: int) -> Response:
        """Book a session in one of the specialist's free slots; the referral is scheduled."""
        referral = _referral(request, referral_id)
        data = BookingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        guests = [scheduling.Guest(**guest) for guest in fields["guests"]]
        appointment = _apply(lambda: scheduling.book_appointment(
            referral=referral, booked_by=request.user, starts_at=fields["starts_at"],
            kind=fields["kind"], participants=guests))  # fmt: skip
        return Response(AppointmentSerializer(appointment).data, status=status.HTTP_201_CREATED)


class FreeSlots(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("start", dt.datetime, description="from (default: now)"),
            OpenApiParameter("end", dt.datetime, description="until (default: 14 days later)"),
        ],
        responses=SlotSerializer(many=True),
        operation_id="specialists_free_slots",
    )
    def get(self, request: Request, specialist_id: int) -> Response:
        """A specialist's free slots (staff only; at most 31 days at once)."""
        if access.rows_allowed(request.user, access.VIEW, AvailabilityRule) == access.NOTHING:
            raise PermissionDenied
        specialist = get_object_or_404(
            User, pk=specialist_id, memberships__role=Membership.Role.SPECIALIST
        )
        start = self._moment(request, "start") or timezone.now()
        end = self._moment(request, "end") or start + dt.timedelta(days=14)
        end = min(end, start + dt.timedelta(days=31))
        slots = scheduling.free_slots(specialist=specialist, start=start, end=end)
        return Response(SlotSerializer(slots, many=True).data)

    @staticmethod
    def _moment(request: Request, name: str) -> dt.datetime | None:
        value = request.query_params.get(name)
        if not value:
            return None
        moment = serializers.DateTimeField().run_validation(value)
        return moment


class AppointmentList(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("upcoming", bool, description="only booked, from now")],
        responses=AppointmentSerializer(many=True),
        operation_id="appointments_list",
    )
    def get(self, request: Request) -> Response:
        """Sessions the user may see (the 200 next or latest)."""
        appointments = scheduling.appointments_visible_to(request.user).prefetch_related(
            "participants"
        )
        if request.query_params.get("upcoming") in ("true", "1"):
            appointments = appointments.filter(
                status=Appointment.Status.BOOKED, ends_at__gte=timezone.now()
            ).order_by("starts_at")
        else:
            appointments = appointments.order_by("-starts_at")
        rows = list(appointments[:200])
        record_patient_reads(actor=request.user, patients={a.referral.patient for a in rows})
        return Response(AppointmentSerializer(rows, many=True).data)


class AppointmentCancel(APIView):
    @extend_schema(
        request=ReasonSerializer,
        responses=AppointmentSerializer,
        operation_id="appointments_cancel",
    )
    def post(self, request: Request, appointment_id: int) -> Response:
        """Cancel a session: everyone is told, the referral goes back to triaged."""
        appointment = scheduling.appointment_for(user=request.user, appointment_id=appointment_id)
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _apply(lambda: scheduling.cancel_appointment(
            appointment=appointment, actor=request.user,
            reason=data.validated_data["reason"]))  # fmt: skip
        return Response(AppointmentSerializer(appointment).data)
