from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import access
from accounts import selectors as account_selectors
from ehr.diary.selectors import open_alerts_for
from ehr.models import LabMessage, Patient
from ehr.selectors import patients_visible_to


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Each role's work on one page; later parts (referrals, sessions, studies) add sections."""
    user = request.user
    memberships = user.memberships.filter(is_active=True).select_related("organization")
    context = {
        "memberships": memberships,
        "own_patient": Patient.objects.filter(user=user).first(),
        # A count only: no patient data is shown, so there is nothing to audit.
        "visible_patient_count": patients_visible_to(user).count(),
        "can_read_audit_log": account_selectors.can_read_audit_log(user),
        # Open diary alerts (each patient listed is audited); empty for non-clinicians.
        "diary_alerts": open_alerts_for(user),
        "can_review_lab_messages": access.rows_allowed(user, access.VIEW, LabMessage)
        != access.NOTHING,
    }
    return render(request, "dashboard.html", context)
