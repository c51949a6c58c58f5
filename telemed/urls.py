from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import api as accounts_api
from consults import api as consults_api
from ehr import api as ehr_api
from ehr.fhir import views as fhir_views
from telemed import health, views

admin.site.site_header = "Telemed"
admin.site.site_title = "Telemed"

api_v1 = [
    path("me/", accounts_api.MeView.as_view(), name="me"),
    path("organizations/", accounts_api.OrganizationList.as_view(), name="organization-list"),
    path(
        "organizations/<int:pk>/",
        accounts_api.OrganizationDetail.as_view(),
        name="organization-detail",
    ),
    path("audit-events/", accounts_api.AuditEventList.as_view(), name="audit-event-list"),
    path("patients/", ehr_api.PatientList.as_view(), name="patient-list"),
    path("patients/<int:patient_id>/", ehr_api.PatientDetail.as_view(), name="patient-detail"),
    path(
        "patients/<int:patient_id>/access-log/",
        ehr_api.PatientAccessLog.as_view(),
        name="patient-access-log",
    ),
    path("referrals/", consults_api.ReferralList.as_view(), name="referral-list"),
    path(
        "referrals/<int:referral_id>/",
        consults_api.ReferralDetail.as_view(),
        name="referral-detail",
    ),
    path(
        "referrals/<int:referral_id>/submit/",
        consults_api.ReferralSubmit.as_view(),
        name="referral-submit",
    ),
    path(
        "referrals/<int:referral_id>/triage/",
        consults_api.ReferralTriage.as_view(),
        name="referral-triage",
    ),
    path(
        "referrals/<int:referral_id>/cancel/",
        consults_api.ReferralCancel.as_view(),
        name="referral-cancel",
    ),
    path(
        "referrals/<int:referral_id>/appointments/",
        consults_api.ReferralBook.as_view(),
        name="referral-book",
    ),
    path(
        "specialists/<int:specialist_id>/free-slots/",
        consults_api.FreeSlots.as_view(),
        name="specialist-free-slots",
    ),
    path("appointments/", consults_api.AppointmentList.as_view(), name="appointment-list"),
    path(
        "appointments/<int:appointment_id>/cancel/",
        consults_api.AppointmentCancel.as_view(),
        name="appointment-cancel",
    ),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", health.healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("patients/", include("ehr.urls")),
    path("diary/", include("ehr.diary.urls")),
    path("consults/", include("consults.urls")),
    path("join/", include("consults.join_urls")),
    # FHIR clients POST transaction bundles to the base URL itself, without a slash.
    path("fhir", fhir_views.transaction),
    path("fhir/", include("ehr.fhir.urls")),
    path("hl7/", include("ehr.hl7.urls")),
    path("imaging/", include("imaging.urls")),
    path("dicomweb/", include("imaging.dicomweb.urls")),
    path("api/v1/", include((api_v1, "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
