from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import access
from accounts import selectors as account_selectors
from accounts.models import User
from consults.models import OPEN_STATUSES
from consults.services.sessions import upcoming_visits
from ehr.diary.selectors import open_alerts_for
from ehr.models import LabMessage, Patient
from ehr.selectors import patients_visible_to


def referral_summary(user: User) -> dict[str, object]:
    """What the dashboard says of referrals: a count and the few that need this user now."""
    from consults.models import Referral
    from consults.selectors import referrals_visible_to, triage_queue

    visible = referrals_visible_to(user)
    queue = triage_queue(user=user)
    return {
        "triage_waiting": len(queue),
        "triage_overdue": sum(referral.is_overdue for referral in queue),
        # A count and statuses only: names appear on the pages that audit them.
        "my_consults": visible.filter(specialist=user, status__in=OPEN_STATUSES).count(),
        "reports_to_read": visible.filter(
            referring_clinician=user, status=Referral.Status.REPORT_SIGNED
        ).count(),
        "open_referrals": visible.exclude(status__in=["closed", "declined", "cancelled"]).count(),
    }


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
        **referral_summary(user),
        "upcoming_visits": upcoming_visits(user),
        "can_review_lab_messages": access.rows_allowed(user, access.VIEW, LabMessage)
        != access.NOTHING,
    }
    return render(request, "dashboard.html", context)
