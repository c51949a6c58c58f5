"""Importing a FHIR transaction Bundle into the record, idempotently and all or nothing.

Each row keeps the identifier it came with (`source_system`/`source_id`; a patient their PIN),
so the same bundle posted twice finds its rows the second time and changes nothing. Rows that
this installation exported name their own id (`codes.local_identifier_system`), so importing
our own export back into the same record finds them too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import models, transaction

from accounts import access
from accounts.models import AuditEvent, Membership, Organization, User
from accounts.services.audit import record_event
from ehr.fhir import codes
from ehr.fhir.parsing import PARSERS, ParsedEntry, unprocessable
from ehr.fhir.resources import IMPORTABLE
from ehr.fhir.responses import FhirError
from ehr.models import Document, Encounter, Patient
from ehr.services.patients import PossibleDuplicate, possible_duplicates, register_patient
from ehr.services.patients import update_patient as update_patient_identity
from ehr.services.record import MAX_DOCUMENT_BYTES, sniff_document_type

CREATED, UPDATED, UNCHANGED = "201 Created", "200 OK", "200 OK"
# A bundle entry without an identifier is known by its fullUrl (RFC 3986 URI as identifier).
URI_SYSTEM = "urn:ietf:rfc:3986"
_RELATIVE = re.compile(r"(?:^|/)(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class ImportedEntry:
    """What became of one entry: for the transaction-response Bundle."""

    resource_type: str
    resource_id: str
    status: str
    is_new: bool


@dataclass
class _Context:
    user: User
    organization_id: int | None
    resolved: dict[str, models.Model]


def _describe(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in error.message_dict.items())
    return " ".join(error.messages)


def _import_organization(context: _Context) -> Organization:
    """Where a new patient belongs: the importing clinician's organization."""
    clinics = access.organization_ids(context.user, Membership.Role.CLINICIAN)
    if context.organization_id is not None:
        if context.organization_id not in clinics:
            raise FhirError(
                403, "forbidden", "You are not a clinician of the organization in the header."
            )
        return Organization.objects.get(pk=context.organization_id)
    if not clinics:
        raise FhirError(403, "forbidden", "Only a clinician may import new patients.")
    if len(clinics) > 1:
        raise FhirError(
            400,
            "required",
            "You are a clinician of several organizations: name the one new patients belong "
            "to with the header X-Telemed-Organization: <id> "
            f"(one of {', '.join(str(pk) for pk in sorted(clinics))}).",
        )
    return Organization.objects.get(pk=clinics[0])


def _writable(user: User, row: models.Model, label: str) -> models.Model:
    # A patient the user may not even read answers as absent (404), as reads do.
    if not access.can(user, access.VIEW, row):
        raise FhirError(404, "not-found", f"{label} is not known.")
    if not access.can(user, access.CHANGE, row):
        raise FhirError(403, "forbidden", f"You may not change {label}.")
    return row


def _if_none_exist(entry: dict[str, Any]) -> tuple[str, str] | None:
    query = entry.get("request", {}).get("ifNoneExist", "")
    if not query:
        return None
    params = dict(parse_qsl(query.lstrip("?")))
    if set(params) != {"identifier"}:
        raise FhirError(400, "not-supported", "ifNoneExist supports only identifier=system|value.")
    system, _bar, value = params["identifier"].rpartition("|")
    return system, value


def _put_target(entry: dict[str, Any]) -> str:
    request = entry.get("request", {})
    if request.get("method") != "PUT":
        return ""
    match = _RELATIVE.search(request.get("url", "").split("?")[0])
    return match["id"] if match else ""


def _import_patient(entry: dict[str, Any], parsed: ParsedEntry, context: _Context) -> tuple:
    fields, user = parsed.fields, context.user
    existing: Patient | None = None
    target_id = _put_target(entry)
    if target_id:
        existing = Patient.objects.filter(pk=int(target_id) if target_id.isdigit() else 0).first()
        if existing is None:
            raise FhirError(404, "not-found", f"Patient/{target_id} is not known.")
    condition = _if_none_exist(entry)
    if existing is None and condition and condition[0] == codes.PIN_SYSTEM:
        match = Patient.objects.filter(pin=condition[1]).first()
        if match is not None:
            return _writable(user, match, "this patient"), UNCHANGED, False
    if existing is None and fields.get("pin"):
        existing = Patient.objects.filter(pin=fields["pin"]).first()
    if existing is None and not fields.get("pin"):
        # Without a PIN the patient is known by name and birth date, among the user's own.
        candidates = [
            candidate
            for candidate in possible_duplicates(fields=fields)
            if access.can(user, access.CHANGE, candidate)
        ]
        if len(candidates) > 1:
            raise unprocessable("Patient", "several patients match this name and birth date")
        existing = candidates[0] if candidates else None
    if existing is not None:
        _writable(user, existing, "this patient")
        changes = {
            name: value for name, value in fields.items() if getattr(existing, name) != value
        }
        if not changes:
            return existing, UNCHANGED, False
        try:
            return (
                update_patient_identity(patient=existing, changed_by=user, **changes),
                UPDATED,
                False,
            )
        except ValidationError as error:
            raise unprocessable("Patient", _describe(error)) from None
    organization = _import_organization(context)
    try:
        # A PIN is the person: the same name and birth date with another PIN is someone else.
        patient = register_patient(
            registered_by=user,
            organization=organization,
            confirmed_new=bool(fields.get("pin")),
            **fields,
        )
    except PossibleDuplicate:
        raise unprocessable(
            "Patient", "this patient may already be registered; send their PIN identifier"
        ) from None
    except PermissionDenied:
        raise FhirError(403, "forbidden", "You may not register patients here.") from None
    except ValidationError as error:
        raise unprocessable("Patient", _describe(error)) from None
    return patient, CREATED, True


def _resolve(reference: str, context: _Context, model: type, patient: Patient | None) -> Any:
    if reference in context.resolved:
        row = context.resolved[reference]
        if not isinstance(row, model):
            raise FhirError(422, "processing", f"{reference} is not a {model.__name__}.")
        return row
    match = _RELATIVE.search(reference)
    if not match or match["type"] != model.__name__ or not match["id"].isdigit():
        raise FhirError(422, "processing", f"Reference {reference!r} is not in this bundle.")
    if model is Patient:
        row = Patient.objects.select_related("organization").filter(pk=int(match["id"])).first()
        if row is None:
            raise FhirError(404, "not-found", f"{reference} is not known.")
        return _writable(context.user, row, reference)
    row = Encounter.objects.filter(pk=int(match["id"]), patient=patient).first()
    if row is None:
        raise FhirError(422, "processing", f"{reference} is not in this patient's record.")
    return row


def _existing_row(model: type, patient: Patient, key: tuple[str, str]) -> Any:
    system, value = key
    row = model.objects.filter(patient=patient, source_system=system, source_id=value).first()
    is_ours = system == codes.local_identifier_system(model._meta.model_name)
    if row is None and is_ours and value.isdigit():
        # Our own export of a row born here: its id is its identifier.
        row = model.objects.filter(patient=patient, pk=int(value), source_id="").first()
    return row


def _store_file(row: Document, parsed: ParsedEntry) -> None:
    data = parsed.file_data or b""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise unprocessable("DocumentReference", "the attachment is larger than 25 MB")
    content_type = sniff_document_type(data[:16])
    if content_type is None:
        raise unprocessable(
            "DocumentReference", "only PDF files and JPEG, PNG or WebP images can be attached"
        )
    row.content_type, row.size = content_type, len(data)
    row.sha256 = hashlib.sha256(data).hexdigest()
    row.file.save(parsed.file_name, ContentFile(data), save=False)


def _import_record_entry(entry: dict[str, Any], parsed: ParsedEntry, context: _Context) -> tuple:
    user, model = context.user, parsed.model
    if not parsed.patient_reference:
        raise unprocessable(entry["resource"]["resourceType"], "the patient reference is required")
    patient = _resolve(parsed.patient_reference, context, Patient, None)
    fields = dict(parsed.fields)
    if parsed.encounter_reference:
        fields["encounter"] = _resolve(parsed.encounter_reference, context, Encounter, patient)
    key = parsed.identifier
    if key is None and entry.get("fullUrl"):
        key = (URI_SYSTEM, entry["fullUrl"])
    if key is None:
        raise unprocessable(
            model.__name__, "an identifier (or a fullUrl) is required, so that import is idempotent"
        )
    condition = _if_none_exist(entry)
    if condition and (match := _existing_row(model, patient, condition)):
        return _writable(user, match, "this entry"), UNCHANGED, False
    row = _existing_row(model, patient, key)
    if row is not None:
        _writable(user, row, "this entry")
        changes = {name: value for name, value in fields.items() if getattr(row, name) != value}
        new_file = model is Document and hashlib.sha256(parsed.file_data).hexdigest() != row.sha256
        if not changes and not new_file:
            return row, UNCHANGED, False
        for name, value in changes.items():
            setattr(row, name, value)
        if new_file:
            _store_file(row, parsed)
        action, status, is_new = AuditEvent.Action.UPDATE, UPDATED, False
    else:
        row = model(patient=patient, recorded_by=user, source_system=key[0], source_id=key[1])
        for name, value in fields.items():
            setattr(row, name, value)
        if not access.can_create(user, row):
            raise FhirError(403, "forbidden", "You may not add to this patient's record.")
        if model is Document:
            _store_file(row, parsed)
        action, status, is_new = AuditEvent.Action.CREATE, CREATED, True
    try:
        row.full_clean()
    except ValidationError as error:
        raise unprocessable(entry["resource"]["resourceType"], _describe(error)) from None
    row.save()
    record_event(
        actor=user,
        action=action,
        target=row,
        patient_id=patient.pk,
        region=patient.organization.region,
        detail={"via": "fhir"},
    )
    return row, status, is_new


def _reference_keys(entry: dict[str, Any]) -> list[str]:
    resource = entry["resource"]
    keys = []
    if entry.get("fullUrl"):
        keys.append(entry["fullUrl"])
        match = _RELATIVE.search(entry["fullUrl"])
        if match and match["type"] == resource["resourceType"]:
            keys.append(f"{match['type']}/{match['id']}")
    elif resource.get("id"):
        keys.append(f"{resource['resourceType']}/{resource['id']}")
    return keys


def _fhir_id(row: models.Model) -> str:
    return f"note-{row.pk}" if row._meta.model_name == "clinicalnote" else str(row.pk)


@transaction.atomic
def import_transaction(
    *, bundle: dict[str, Any], user: User, organization_id: int | None = None
) -> list[ImportedEntry]:
    """Apply a validated FHIR `transaction` Bundle as `user`; all of it or nothing.

    Patients are found by their PIN (new ones join the user's clinic, or `organization_id`
    when the user is a clinician of several); record entries by their identifier within the
    patient's record. `request.ifNoneExist` (identifier=system|value) leaves a match as it is.
    Raises FhirError (404/403/422/400), which rolls everything back.
    """
    if bundle.get("type") != "transaction":
        raise FhirError(400, "invalid", "Only a Bundle of type 'transaction' can be posted.")
    entries = bundle.get("entry", [])
    parsed: list[ParsedEntry] = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        method = entry.get("request", {}).get("method")
        if resource is None or method not in ("POST", "PUT"):
            raise FhirError(
                400,
                "not-supported",
                f"entry[{index}]: only POST and PUT of a resource are supported.",
            )
        try:
            parsed.append(PARSERS[resource["resourceType"]](resource))
        except FhirError as error:
            error.diagnostics = f"entry[{index}] {error.diagnostics}"
            raise
    context = _Context(user=user, organization_id=organization_id, resolved={})
    results: dict[int, ImportedEntry] = {}
    order = sorted(
        range(len(entries)), key=lambda i: IMPORTABLE.index(entries[i]["resource"]["resourceType"])
    )
    for index in order:
        entry, resource_type = entries[index], entries[index]["resource"]["resourceType"]
        importer = _import_patient if resource_type == "Patient" else _import_record_entry
        try:
            row, status, is_new = importer(entry, parsed[index], context)
        except FhirError as error:
            error.diagnostics = f"entry[{index}] {error.diagnostics}"
            raise
        for key in _reference_keys(entry):
            context.resolved[key] = row
        results[index] = ImportedEntry(resource_type, _fhir_id(row), status, is_new)
    return [results[index] for index in range(len(entries))]
