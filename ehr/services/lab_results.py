"""Lab results arriving as HL7 v2 ORU^R01 messages (over MLLP or HTTP), and their review.

Every message is kept as received (`LabMessage`) before anything else happens, so a result is
never lost: one that names no known patient waits for a coordinator to attach it, one that
cannot be read waits with its error. Results become laboratory Observations whose
(source_system, source_id) identify them, so a message sent twice stores nothing twice.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts import access
from accounts.models import AuditEvent, Membership, User
from accounts.services.audit import record_event
from ehr.hl7.parsing import (
    APPLICATION_INTERNAL_ERROR,
    UNKNOWN_KEY_IDENTIFIER,
    BadMessage,
    LabResult,
    OruMessage,
    build_ack,
    control_id_of,
    parse_oru,
)
from ehr.models import LabMessage, Observation, Patient

logger = logging.getLogger(__name__)

# Who may post results over HTTP: the account a lab system uses holds one of these roles.
SENDER_ROLES = (Membership.Role.CLINICIAN, Membership.Role.COORDINATOR)


def may_send_lab_results(user: User) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and access.has_role(user, *SENDER_ROLES)


def receive_oru(*, raw: str, channel: str, sender: str) -> tuple[LabMessage, str]:
    """Keep the message, store its results, and return it with the ACK to send back.

    AA: stored (also when every result was already there: a re-sent message).
    AE: read, but no patient has the PIN of PID-3; kept as `unmatched` for review.
    AR: not an ORU^R01 or unreadable; kept as `rejected` with the error.
    """
    # Saved on its own, outside any transaction that could roll it back: never dropped.
    # PostgreSQL's text cannot hold NUL, which only garbage contains.
    lab_message = LabMessage.objects.create(
        channel=channel,
        sender=sender[:200],
        control_id=control_id_of(raw),
        raw=raw.replace("\x00", "\ufffd"),
        status=LabMessage.Status.REJECTED,
    )
    try:
        oru = parse_oru(raw)
    except BadMessage as error:
        _mark(lab_message, status=LabMessage.Status.REJECTED, error=error.reason)
        return lab_message, build_ack(raw, "AR", reason=error.reason, error_code=error.error_code)

    try:
        patient, reason = _match_patient(oru)
        if patient is None:
            _mark(lab_message, status=LabMessage.Status.UNMATCHED, error=reason)
            return lab_message, build_ack(
                raw, "AE", reason=reason, error_code=UNKNOWN_KEY_IDENTIFIER
            )
        with transaction.atomic():
            created = _store_results(
                oru=oru, patient=patient, lab_message=lab_message, actor=None, actor_label=sender
            )
            lab_message.patient = patient
            lab_message.observation_count = created
            _mark(lab_message, status=LabMessage.Status.ACCEPTED, error="")
    except Exception as error:
        # Our fault, not the sender's: AE tells the lab to send it again later, and the
        # message stays visible as rejected with what went wrong.
        logger.exception("Lab message %s could not be stored", lab_message.pk)
        reason = f"Internal error while storing the results: {error.__class__.__name__}"
        lab_message.patient, lab_message.observation_count = None, 0
        _mark(lab_message, status=LabMessage.Status.REJECTED, error=reason)
        return lab_message, build_ack(
            raw, "AE", reason=reason, error_code=APPLICATION_INTERNAL_ERROR
        )
    return lab_message, build_ack(raw, "AA")


@transaction.atomic
def attach_lab_message(*, lab_message: LabMessage, user: User, pin: str) -> LabMessage:
    """Attach a message that matched nobody to the patient with `pin`, storing its results.

    The reviewer must be allowed to change the message (ehr/policies.py) and to see the
    patient, so that nobody can push results into a record they cannot see themselves."""
    lab_message = LabMessage.objects.select_for_update().get(pk=lab_message.pk)
    access.ensure_can(user, access.CHANGE, lab_message)
    if lab_message.status != LabMessage.Status.UNMATCHED:
        raise ValidationError(_("Only a message that matched no patient can be attached."))
    patient = Patient.objects.select_related("organization").filter(pin=pin.strip()).first()
    if patient is None or not access.can(user, access.VIEW, patient):
        raise ValidationError(_("No patient you may see has this personal number (PIN)."))
    try:
        oru = parse_oru(lab_message.raw)
    except BadMessage as error:
        raise ValidationError(error.reason) from error
    created = _store_results(
        oru=oru, patient=patient, lab_message=lab_message, actor=user, actor_label=""
    )
    lab_message.patient = patient
    lab_message.observation_count = created
    lab_message.status = LabMessage.Status.RESOLVED
    lab_message.save(update_fields=["patient", "observation_count", "status"])
    record_event(
        actor=user,
        action=AuditEvent.Action.UPDATE,
        target=lab_message,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"attached_by_pin": True, "observations_created": created},
    )
    return lab_message


# --- Internals -------------------------------------------------------------------------------


def _mark(lab_message: LabMessage, *, status: str, error: str) -> None:
    lab_message.status = status
    lab_message.error = error
    lab_message.save(update_fields=["status", "error", "patient", "observation_count"])


def _match_patient(oru: OruMessage) -> tuple[Patient | None, str]:
    if not oru.pins:
        return None, "PID-3 holds no 14-digit personal number (PIN)."
    patients = list(Patient.objects.select_related("organization").filter(pin__in=oru.pins))
    if not patients:
        return None, f"No patient with personal number {', '.join(oru.pins)} (PID-3)."
    if len(patients) > 1:
        # Two PINs naming two people: guessing would put results in the wrong record.
        return None, "PID-3 names more than one patient; the message needs review."
    return patients[0], ""


def _store_results(
    *,
    oru: OruMessage,
    patient: Patient,
    lab_message: LabMessage,
    actor: User | None,
    actor_label: str,
) -> int:
    """Create the observations not stored yet (corrections update theirs); returns how many
    were created. Each write is audited."""
    created = 0
    for result in oru.results:
        existing = Observation.objects.filter(
            patient=patient, source_system=oru.source_system, source_id=result.source_id
        ).first()
        if existing is not None:
            if result.is_correction:
                _apply(existing, result)
                existing.save()
                _audit(existing, patient, lab_message, AuditEvent.Action.UPDATE, actor, actor_label)
            continue
        observation = Observation(
            patient=patient,
            category=Observation.Category.LABORATORY,
            source=Observation.Source.LAB,
            source_system=oru.source_system,
            source_id=result.source_id,
        )
        _apply(observation, result)
        observation.full_clean(validate_constraints=False)
        try:
            # A savepoint: the same result arriving twice at once must not undo the rest.
            with transaction.atomic():
                observation.save()
        except IntegrityError:
            continue
        created += 1
        _audit(observation, patient, lab_message, AuditEvent.Action.CREATE, actor, actor_label)
    return created


def _apply(observation: Observation, result: LabResult) -> None:
    observation.code = result.code
    observation.display = result.display
    observation.value = result.value
    observation.value_text = result.value_text
    observation.unit = result.unit
    observation.reference_low = result.reference_low
    observation.reference_high = result.reference_high
    observation.interpretation = result.interpretation
    observation.effective_at = result.effective_at


def _audit(
    observation: Observation,
    patient: Patient,
    lab_message: LabMessage,
    action: str,
    actor: User | None,
    actor_label: str,
) -> None:
    record_event(
        actor=actor,
        actor_label=actor_label,
        action=action,
        target=observation,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"lab_message_id": lab_message.pk, "control_id": lab_message.control_id},
    )
