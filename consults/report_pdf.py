"""The signed consult report as a PDF, kept in the patient's record."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _

from consults.models import ConsultReport, Referral
from ehr.extract import pdf_document


def render_report_pdf(*, referral: Referral, report: ConsultReport) -> bytes:
    pdf = pdf_document()
    patient = referral.patient
    signed = timezone.localtime(report.signed_at or timezone.now())
    pdf.set_font("DejaVu", "B", 15)
    pdf.multi_cell(0, 8, _("Consult report: %(specialty)s") % {"specialty": referral.specialty},
                   new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    pdf.set_font("DejaVu", "", 10)
    lines = [
        f"{patient.full_name}, {patient.birth_date:%d.%m.%Y}, {_('PIN')} {patient.pin or '—'}",
        f"{_('Referred by')}: {referral.referring_clinician}, {referral.referring_organization}",
        f"{_('Specialist')}: {report.author} · {_('Signed')}: {signed:%d.%m.%Y %H:%M}",
    ]
    for line in lines:
        pdf.multi_cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    sections = [
        (_("Clinical question"), referral.question),
        (_("Findings"), report.findings),
        (_("Diagnosis"), f"{report.diagnosis_code} {report.diagnosis_text}"),
        (_("Recommendations"), report.recommendations),
        (_("Follow-up"), report.follow_up or "—"),
    ]
    for title, text in sections:
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", 12)
        pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
