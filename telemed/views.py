from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import selectors as account_selectors
from ehr.models import Patient
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
    }
    return render(request, "dashboard.html", context)
