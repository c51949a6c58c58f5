"""REST API of accounts: who am I, organizations, the audit log."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import generics, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from accounts.filters import AuditEventFilter
from accounts.models import AuditEvent, Membership, Organization, User


class MembershipSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.name")
    organization_id = serializers.IntegerField()
    specialties = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Membership
        fields = ["organization_id", "organization", "role", "specialties"]


class MeSerializer(serializers.ModelSerializer):
    memberships = serializers.SerializerMethodField()
    roles = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "language", "time_zone", "roles", "memberships"]

    def get_memberships(self, user: User) -> list[dict[str, Any]]:
        memberships = user.memberships.filter(is_active=True).select_related("organization")
        return MembershipSerializer(memberships, many=True).data

    def get_roles(self, user: User) -> list[str]:
        return sorted(user.roles)


class MeView(APIView):
    """The authenticated user, with their roles and memberships."""

    serializer_class = MeSerializer

    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name", "kind", "region", "address", "phone"]


class OrganizationList(generics.ListAPIView):
    """Organizations the user may see."""

    serializer_class = OrganizationSerializer

    def get_queryset(self) -> QuerySet[Organization]:
        return selectors.organizations_visible_to(self.request.user)


class OrganizationDetail(generics.RetrieveAPIView):
    serializer_class = OrganizationSerializer

    def get_queryset(self) -> QuerySet[Organization]:
        return selectors.organizations_visible_to(self.request.user)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor_user_id",
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
            "detail",
        ]


class AuditEventList(generics.ListAPIView):
    """The audit log (coordinators: their region; administrators: everything)."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    queryset = AuditEvent.objects.none()  # the schema generator's model hint

    def get_queryset(self) -> QuerySet[AuditEvent]:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        if not selectors.can_read_audit_log(self.request.user):
            raise PermissionDenied
        return selectors.audit_events_visible_to(self.request.user)
