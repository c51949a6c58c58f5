"""REST API of patients (read); every read is audited by the selectors."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ehr import selectors
from ehr.models import Patient


class PatientSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.name", read_only=True)

    class Meta:
        model = Patient
        fields = [
            "id",
            "pin",
            "family_name",
            "given_name",
            "patronymic",
            "birth_date",
            "sex",
            "phone",
            "organization_id",
            "organization",
        ]


class PatientListResponse(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = PatientSerializer(many=True)


class PatientList(APIView):
    """Patients the user may read, searched by name or PIN (50 a page)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="words of the name, or the start of a PIN"),
            OpenApiParameter("page", int),
        ],
        responses=PatientListResponse,
        operation_id="patients_list",
    )
    def get(self, request: Request) -> Response:
        page = selectors.search_patients(
            user=request.user,
            query=request.query_params.get("q", ""),
            page=request.query_params.get("page", 1),
        )
        return Response(
            {
                "count": page.paginator.count,
                "page": page.number,
                "pages": page.paginator.num_pages,
                "results": PatientSerializer(page.object_list, many=True).data,
            }
        )


class PatientDetail(APIView):
    @extend_schema(responses=PatientSerializer, operation_id="patients_retrieve")
    def get(self, request: Request, patient_id: int) -> Response:
        patient = selectors.patient_for(user=request.user, patient_id=patient_id)
        return Response(PatientSerializer(patient).data)


class RecordReaderSerializer(serializers.Serializer):
    actor_label = serializers.CharField()
    actor_roles = serializers.CharField()
    reads = serializers.IntegerField()
    last_read_at = serializers.DateTimeField()


class PatientAccessLog(APIView):
    """For the patient: who read their record, how many times, when last."""

    @extend_schema(responses=RecordReaderSerializer(many=True), operation_id="patients_access_log")
    def get(self, request: Request, patient_id: int) -> Response:
        _patient, readers = selectors.who_read_record(user=request.user, patient_id=patient_id)
        return Response(RecordReaderSerializer(readers, many=True).data)
