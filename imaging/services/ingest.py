"""Getting DICOM in: keep every file as received, then index it (Celery).

`receive_file` is the one door for every source (browser upload, archive, DICOMDIR, C-STORE,
STOW-RS): it stores the bytes untouched with their SHA-256 and queues the ingest. `ingest`
parses, validates and indexes one received file; it is idempotent on SOPInstanceUID (a resend
of the same instance changes nothing; a different file with the same UID is kept and flagged
as a conflict) and safe to run twice on the same file (a redelivered task).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import IO

from django.core.files.base import ContentFile, File
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    connection,
    connections,
    router,
    transaction,
)
from django.db.models import signals
from django.db.models.sql import InsertQuery
from django.utils import timezone

from accounts.models import AuditEvent, Organization, User
from accounts.services.audit import record_event
from imaging.dicom.parse import NotDicom, ParsedInstance, parse_instance
from imaging.models import Instance, ReceivedFile, Series, Study, UploadBatch
from imaging.services.files import is_plain_filesystem, keep_new_file
from imaging.services.matching import match_study_patient
from imaging.services.renditions import queue_render
from telemed.sqlite import execute_soon_after_lock

logger = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20


def _sha256(content: bytes | IO[bytes]) -> tuple[str, int]:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest(), len(content)
    digest, size = hashlib.sha256(), 0
    content.seek(0)
    while chunk := content.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    content.seek(0)
    return digest.hexdigest(), size


def receive_file(
    *,
    content: bytes | IO[bytes],
    source: str,
    organization: Organization,
    received_by: User | None = None,
    calling_ae: str = "",
    batch: UploadBatch | None = None,
    original_name: str = "",
    queue_ingest: bool = True,
) -> ReceivedFile:
    """Keep `content` exactly as received, then (after commit) queue its ingest.

    With `queue_ingest=False` the caller queues the ingest itself, for many files at once
    (`queue_ingest_of`): a C-STORE association or an archive does so in batches.
    """
    sha256, size = _sha256(content)
    received = ReceivedFile(
        source=source,
        organization=organization,
        received_by=received_by,
        calling_ae=calling_ae,
        batch=batch,
        original_name=original_name[:500],
        size=size,
        sha256=sha256,
    )
    field_file = received.file
    if is_plain_filesystem(field_file.storage):
        # The field's own name (a date and a hex digest) needs none of the storage's cleaning.
        name = field_file.field.upload_to(received, sha256)
        received.file = keep_new_file(storage=field_file.storage, name=name, content=content)
    else:  # object storage and the like: through the storage API
        stored = ContentFile(content) if isinstance(content, bytes) else File(content)
        received.file.save(sha256, stored, save=False)
    _insert_new(received)
    if queue_ingest:
        queue_ingest_of([received.pk])
    return received


# The INSERT of a new ReceivedFile, compiled once per database: the ORM compiles the same
# statement for every row, which cost more CPU than SQLite running it (bench/imaging_receive.py
# --insert), on the path every C-STORE waits for.
_insert_statements: dict[tuple[str, str], str] = {}


def _insert_new(received: ReceivedFile) -> None:
    """What `received.save()` does for a new row, less compiling the statement each time."""
    meta = ReceivedFile._meta
    using = router.db_for_write(ReceivedFile, instance=received)
    connection = connections[using]
    received._prepare_related_fields_for_save(operation_name="save")
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
    values = [field.pre_save(received, True) for field in fields]
    if (
        not connection.features.can_return_columns_from_insert
        or any(hasattr(value, "resolve_expression") for value in values)
        or signals.pre_save.has_listeners(ReceivedFile)
        or signals.post_save.has_listeners(ReceivedFile)
    ):
        received.save()  # what the statement below was not built for: let the ORM do it all
        return
    returning = meta.db_returning_fields
    key = (using, connection.vendor)
    statement = _insert_statements.get(key)
    if statement is None:
        query = InsertQuery(ReceivedFile)
        query.insert_values(fields, [received])
        compiler = query.get_compiler(using=using)
        compiler.returning_fields = returning
        [(statement, _)] = compiler.as_sql()
        _insert_statements[key] = statement
    params = [
        field.get_db_prep_save(value, connection)
        for field, value in zip(fields, values, strict=True)
    ]
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        # The ingest worker may hold SQLite's write lock: the sender waits for this row.
        execute_soon_after_lock(connection, cursor, statement, params)
        row = connection.ops.fetch_returned_insert_columns(cursor, [])
    for field, value in zip(returning, row, strict=True):
        setattr(received, field.attname, value)
    received._state.adding, received._state.db = False, using


def queue_ingest_of(received_file_ids: Iterable[int]) -> None:
    """Queue the ingest of these files once the current transaction commits."""
    from imaging.tasks import ingest_received_files

    ids = list(received_file_ids)
    if ids:
        transaction.on_commit(lambda: ingest_received_files.delay(ids))


def _fail(received: ReceivedFile, reason: str) -> ReceivedFile:
    received.status = ReceivedFile.Status.FAILED
    received.error = reason
    received.processed_at = timezone.now()
    received.save(update_fields=["status", "error", "processed_at"])
    return received


def _unwrapped(stream: File) -> IO[bytes]:
    # pydicom reads a file element by element, tens of reads and tells each: through Django's
    # File proxies every one of them went through properties.
    while isinstance(stream, File) and stream.file is not None:
        stream = stream.file
    return stream


def _parse(received: ReceivedFile) -> ParsedInstance | None:
    """The parsed file, or None when it is not usable DICOM (then it is marked failed)."""
    try:
        with received.file.open("rb") as stream:
            parsed = parse_instance(_unwrapped(stream))
    except NotDicom as error:
        _fail(received, str(error))
        return None
    # OSError (storage trouble) propagates: the task retries, the file stays "received".
    parsed.dataset = None  # only the extracted attributes are needed: free the pixels now
    return parsed


# Files indexed per transaction: few queries per file, and never a whole study in memory.
INGEST_CHUNK = 50


def ingest_received_files(*, received_file_ids: list[int]) -> int:
    """Index those of these files still waiting, a chunk per transaction, then queue the
    renditions of each series that gained images (once per series, not once per instance).
    Returns how many were waiting."""
    series_ids = set()
    waiting = 0
    for start in range(0, len(received_file_ids), INGEST_CHUNK):
        # One chunk in memory at a time: an indexed file holds its instance's metadata, and
        # hundreds of those kept to the end made the garbage collector walk them again and again.
        # (Their organization, batch and sender are loaded only for a new study.)
        chunk = list(
            ReceivedFile.objects.filter(
                pk__in=received_file_ids[start : start + INGEST_CHUNK],
                status=ReceivedFile.Status.RECEIVED,
            )
        )
        waiting += len(chunk)
        for received in ingest_many(chunk):
            if received.status == ReceivedFile.Status.INGESTED:
                series_ids.add(received.instance.series_id)
    # Called by the worker outside any transaction: each chunk is committed already.
    for series_id in sorted(series_ids):
        queue_render(series_id)
    return waiting


def ingest(received: ReceivedFile) -> ReceivedFile:
    """Parse, validate and index one received file. A file that fails is kept with its error."""
    return ingest_many([received])[0]


def ingest_many(received_files: list[ReceivedFile]) -> list[ReceivedFile]:
    """Parse, validate and index several received files (a C-STORE batch, an archive) in one
    transaction: a few queries per batch rather than a dozen per instance. Files already done
    (a redelivered task) are left as they are."""
    parsed: list[tuple[ReceivedFile, ParsedInstance]] = []
    for received in received_files:
        if received.status != ReceivedFile.Status.RECEIVED:
            continue
        result = _parse(received)
        if result is not None:
            parsed.append((received, result))
    if parsed:
        try:
            _index_many(parsed)
        except DatabaseError:
            # Another worker indexed the same study, series or instance at the same moment
            # (IntegrityError), or one file holds a value the database refuses (DataError):
            # index one by one, each finding what the other created; a file the database
            # refuses fails alone, with its reason, and the rest of the batch is indexed.
            for received, result in parsed:
                try:
                    _index_one_with_retries(received, result)
                except DataError as error:
                    _fail(received, f"a value cannot be stored in the index: {error}")
    by_pk = {received.pk: received for received, _ in parsed}
    return [by_pk.get(received.pk, received) for received in received_files]


def _index_one_with_retries(received: ReceivedFile, parsed: ParsedInstance) -> None:
    for attempt in range(3):
        try:
            _index_many([(received, parsed)])
            return
        except IntegrityError:
            if attempt == 2:
                raise


def _index_many(parsed: list[tuple[ReceivedFile, ParsedInstance]]) -> None:
    """Index parsed files: the rows they may join are read first, then every write is made in
    one transaction.

    On SQLite a transaction holds the database's one write lock from its start
    (transaction_mode IMMEDIATE), and the DICOM server waits for it to keep each file a
    modality sends: the reads are made before the lock is taken. What another worker
    indexes in between makes the writes fail on a unique UID (IntegrityError), and the
    caller indexes the files one by one, reading again."""
    uids = {result.instance["sop_instance_uid"] for _, result in parsed}
    known: dict[str, tuple[Instance, str]] = {
        instance.sop_instance_uid: (instance, instance.received_file.sha256)
        for instance in Instance.objects.select_related("received_file")
        .defer("metadata")
        .filter(sop_instance_uid__in=uids)
    }
    studies = {
        study.study_instance_uid: study
        for study in Study.objects.select_related("organization").filter(
            study_instance_uid__in={result.study["study_instance_uid"] for _, result in parsed}
        )
    }
    series_by_uid = {
        series.series_instance_uid: series
        for series in Series.objects.filter(
            series_instance_uid__in={result.series["series_instance_uid"] for _, result in parsed}
        )
    }
    # Each new instance's row, its values prepared for the database (the metadata's JSON above
    # all) before the lock is taken; only the series is filled in under it.
    rows = {
        received.pk: _prepared_row(
            Instance(received_file=received, metadata=result.metadata, **result.instance)
        )
        for received, result in parsed
        if result.instance["sop_instance_uid"] not in known
    }
    with transaction.atomic():
        _write_index(parsed, known=known, studies=studies, series_by_uid=series_by_uid, rows=rows)


def _write_index(
    parsed: list[tuple[ReceivedFile, ParsedInstance]],
    *,
    known: dict[str, tuple[Instance, str]],
    studies: dict[str, Study],
    series_by_uid: dict[str, Series],
    rows: dict[int, tuple[Instance, list]],
) -> None:
    # Claim the files: a concurrent worker with the same ids waits, then finds them done.
    claimed = _claim([received.pk for received, _ in parsed])
    parsed = [(received, result) for received, result in parsed if received.pk in claimed]
    if not parsed:
        return
    now = timezone.now()
    new_instances: list[tuple[ReceivedFile, Instance]] = []
    new_rows: list[tuple[Instance, list]] = []
    for received, result in parsed:
        sop_uid = result.instance["sop_instance_uid"]
        received.sop_instance_uid = sop_uid
        received.processed_at = now
        if sop_uid in known:
            instance, sha256 = known[sop_uid]
            received.instance = instance
            if sha256 == received.sha256:
                received.status = ReceivedFile.Status.DUPLICATE
            else:
                received.status = ReceivedFile.Status.CONFLICT
                received.error = (
                    "another file with this SOPInstanceUID is already indexed; this one is "
                    "kept for review and not served"
                )
            continue
        study = studies.get(result.study["study_instance_uid"])
        if study is None:
            study = studies[result.study["study_instance_uid"]] = _new_study(received, result)
        elif study.organization_id != received.organization_id:
            # A study is filed only by the organization that received it first: a sender of
            # another clinic (an upload, STOW-RS, a modality) cannot add images to it, and so
            # to its patient's record, by reusing its StudyInstanceUID.
            received.status = ReceivedFile.Status.CONFLICT
            received.error = (
                "this study was received by another organization; the file is kept for review "
                "and not added to it"
            )
            continue
        series = series_by_uid.get(result.series["series_instance_uid"])
        if series is None:
            series = Series.objects.create(**result.series, study=study)
            series_by_uid[series.series_instance_uid] = series
        instance, _ = row = rows[received.pk]
        instance.series = series
        known[sop_uid] = (instance, received.sha256)
        new_instances.append((received, instance))
        new_rows.append(row)
    _insert_instances(new_rows)
    for received, instance in new_instances:
        received.instance = instance
        received.status = ReceivedFile.Status.INGESTED
    _save_outcomes([received for received, _ in parsed])
    for series in {instance.series_id: instance.series for _, instance in new_instances}.values():
        _recount(series)


def _claim(received_file_ids: list[int]) -> set[int]:
    """Those of these files still waiting, locked (PostgreSQL) until the transaction ends."""
    table = connection.ops.quote_name(ReceivedFile._meta.db_table)
    marks = ", ".join(["%s"] * len(received_file_ids))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE status = %s AND id IN ({marks}){lock}",
            [ReceivedFile.Status.RECEIVED, *received_file_ids],
        )
        return {pk for (pk,) in cursor.fetchall()}


def _instance_fields() -> list:
    meta = Instance._meta
    return [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]


def _prepared_row(instance: Instance) -> tuple[Instance, list]:
    """A new instance and its row's values as the database takes them (what bulk_create
    computes), the series left to fill in."""
    return instance, [
        None
        if field.attname == "series_id"
        else field.get_db_prep_save(field.pre_save(instance, True), connection)
        for field in _instance_fields()
    ]


# Rows per INSERT: well under SQLite's limit of parameters in one statement.
INSERT_ROWS = 200


def _insert_instances(rows: list[tuple[Instance, list]]) -> None:
    """Instance.objects.bulk_create of these rows (_prepared_row), less preparing the values
    and compiling the statement under the write lock."""
    if not rows:
        return
    if not connection.features.can_return_rows_from_bulk_insert:
        Instance.objects.bulk_create([instance for instance, _ in rows])
        return
    fields = _instance_fields()
    series_slot = [field.attname for field in fields].index("series_id")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    marks = "(" + ", ".join(["%s"] * len(fields)) + ")"
    uid_column = quote(Instance._meta.get_field("sop_instance_uid").column)
    for start in range(0, len(rows), INSERT_ROWS):
        part = rows[start : start + INSERT_ROWS]
        params: list = []
        for instance, values in part:
            values[series_slot] = instance.series_id
            params.extend(values)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(Instance._meta.db_table)} ({columns}) "
                f"VALUES {', '.join([marks] * len(part))} "
                f"RETURNING {quote(Instance._meta.pk.column)}, {uid_column}",
                params,
            )
            # Matched by UID: the order of RETURNING rows is not promised.
            ids = {uid: pk for pk, uid in cursor.fetchall()}
        for instance, _ in part:
            instance.pk = ids[instance.sop_instance_uid]
            instance._state.adding, instance._state.db = False, connection.alias


def _save_outcomes(received_files: list[ReceivedFile]) -> None:
    # One statement, many rows: Django's bulk_update builds a CASE per column and row, which
    # cost more than the rest of the indexing together.
    table = connection.ops.quote_name(ReceivedFile._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET status = %s, instance_id = %s, sop_instance_uid = %s, "
            "processed_at = %s, error = %s WHERE id = %s",
            [
                (
                    received.status,
                    received.instance_id,
                    received.sop_instance_uid,
                    connection.ops.adapt_datetimefield_value(received.processed_at),
                    received.error,
                    received.pk,
                )
                for received in received_files
            ],
        )


def _new_study(received: ReceivedFile, parsed: ParsedInstance) -> Study:
    study = Study.objects.create(**parsed.study, organization=received.organization)
    patient = received.batch.patient if received.batch_id else None
    match_study_patient(study=study, chosen_patient=patient)
    record_event(
        actor=received.received_by,
        actor_label=f"DICOM {received.calling_ae}" if received.calling_ae else "",
        action=AuditEvent.Action.CREATE,
        target=study,
        patient_id=study.patient_id,
        region=study.organization.region,
        detail={"source": received.source},
    )
    return study


def _recount(series: Series) -> None:
    """The series' and its study's counts, and the study's modalities, from the index (raw
    statements: they run under the write lock, and the ORM's compiling cost more)."""
    quote = connection.ops.quote_name
    instances, all_series, studies = (
        quote(model._meta.db_table) for model in (Instance, Series, Study)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {all_series} SET number_of_instances = "
            f"(SELECT COUNT(*) FROM {instances} WHERE series_id = %s) WHERE id = %s",
            [series.pk, series.pk],
        )
        cursor.execute(
            f"SELECT DISTINCT modality FROM {all_series} WHERE study_id = %s", [series.study_id]
        )
        modalities = "\\".join(sorted(modality for (modality,) in cursor.fetchall() if modality))
        cursor.execute(
            f"UPDATE {studies} SET "
            f"number_of_series = (SELECT COUNT(*) FROM {all_series} WHERE study_id = %s), "
            f"number_of_instances = (SELECT COUNT(*) FROM {instances} WHERE series_id IN "
            f"(SELECT id FROM {all_series} WHERE study_id = %s)), "
            "modalities = %s, updated_at = %s WHERE id = %s",
            [
                series.study_id,
                series.study_id,
                modalities[:64],
                connection.ops.adapt_datetimefield_value(timezone.now()),
                series.study_id,
            ],
        )
