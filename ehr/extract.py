"""The EHR extract: a one-page summary of one patient at one time (problems, medications,
allergies, recent vitals and results), as HTML, PDF and a FHIR Bundle. Later parts share it
into calls and attach it to referrals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import AuditEvent, User
from accounts.services.audit import record_event
from ehr.models import Allergy, Condition, Medication, Observation, Patient
from ehr.selectors import latest_observation_per_code, patient_for

RECENT_RESULTS_DAYS = 365


@dataclass
class Extract:
    patient: Patient
    as_of: dt.datetime
    conditions: list[Condition] = field(default_factory=list)
    medications: list[Medication] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    vitals: list[Observation] = field(default_factory=list)
    results: list[Observation] = field(default_factory=list)


def extract_for(*, user: User, patient_id: int, as_of: dt.datetime | None = None) -> Extract:
    """The extract of a patient `user` may read, as the record stood at `as_of` (audited)."""
    patient = patient_for(user=user, patient_id=patient_id)
    as_of = as_of or timezone.now()
    latest = latest_observation_per_code(patient, as_of=as_of)
    since = as_of - dt.timedelta(days=RECENT_RESULTS_DAYS)
    extract = Extract(
        patient=patient,
        as_of=as_of,
        conditions=list(
            patient.condition_set.filter(recorded_at__lte=as_of).exclude(
                clinical_status=Condition.ClinicalStatus.RESOLVED
            )
        ),
        medications=list(
            patient.medication_set.filter(status=Medication.Status.ACTIVE, recorded_at__lte=as_of)
        ),
        allergies=list(
            patient.allergy_set.filter(status=Allergy.Status.ACTIVE, recorded_at__lte=as_of)
        ),
        vitals=[o for o in latest if o.category == Observation.Category.VITAL_SIGNS],
        results=[
            o
            for o in latest
            if o.category == Observation.Category.LABORATORY and o.effective_at >= since
        ],
    )
    record_event(
        actor=user,
        action=AuditEvent.Action.EXPORT,
        target=patient,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"what": "extract", "as_of": as_of.isoformat()},
    )
    return extract


def _font_path(name: str) -> Path:
    path = settings.PDF_FONT_DIR / name
    if not path.exists():
        raise ImproperlyConfigured(
            f"The PDF font {path} is missing: run `make run` or `npm ci` (package dejavu-fonts-ttf)"
        )
    return path


def pdf_document() -> Any:
    """An A4 page with DejaVu Sans (Cyrillic and the Kyrgyz letters) as font "DejaVu"."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_font("DejaVu", "", str(_font_path("DejaVuSans.ttf")))
    pdf.add_font("DejaVu", "B", str(_font_path("DejaVuSans-Bold.ttf")))
    pdf.add_page()
    return pdf


def render_pdf(extract: Extract) -> bytes:
    """The extract as an A4 PDF (fpdf2)."""
    pdf = pdf_document()
    patient = extract.patient
    local = timezone.localtime(extract.as_of)

    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 9, patient.full_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    facts = [
        f"{_('Birth date')}: {patient.birth_date:%d.%m.%Y}",
        f"{_('Sex')}: {patient.get_sex_display()}",
        f"{_('PIN')}: {patient.pin or '—'}",
        f"{_('Home clinic')}: {patient.organization.name}",
    ]
    pdf.multi_cell(0, 5, "   ".join(facts), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(90, 90, 90)
    stamp = _("Extract of the record as of %(time)s") % {"time": f"{local:%d.%m.%Y %H:%M %Z}"}
    pdf.cell(0, 6, stamp, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)

    def section(title: str, lines: list[str]) -> None:
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", 12)
        pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 10)
        for line in lines or [_("None recorded.")]:
            pdf.multi_cell(0, 5, f"• {line}", new_x="LMARGIN", new_y="NEXT")

    section(_("Problems"), [f"{c.icd10_code} {c.description}" for c in extract.conditions])
    section(
        _("Medications"),
        [
            " ".join(p for p in (m.name, m.dose, m.route, m.frequency) if p)
            for m in extract.medications
        ],
    )
    section(
        _("Allergies"),
        [
            " — ".join(p for p in (a.substance, a.reaction, a.get_severity_display()) if p)
            for a in extract.allergies
        ],
    )
    section(
        _("Recent vital signs"),
        [_observation_line(o) for o in extract.vitals],
    )
    section(_("Recent results"), [_observation_line(o) for o in extract.results])
    return bytes(pdf.output())


def _observation_line(observation: Observation) -> str:
    when = timezone.localtime(observation.effective_at)
    flag = f" ({observation.get_interpretation_display()})" if observation.interpretation else ""
    return f"{observation.label}: {observation.value_display}{flag} — {when:%d.%m.%Y}"
