"""Ingest benchmark: the Celery worker's CPU per instance, old against new, in one run.

    .venv/bin/python bench/imaging_parse.py [--small 500] [--ct 50] [--rounds 5]
        [--baseline FILE] [--ingest] [--no-parse]

Data, built in memory with pydicom: small 128x128 and CT 512x512 16-bit instances with the
attributes bench/imaging_pacs.py sends, and copies of pydicom's CT_small.dcm (a modality's file:
~260 elements with sequences and private tags).

- parse: `parse_instance` alone;
- with --ingest: the task `ingest_received_files` on files already received (scratch SQLite
  database, start-up objects frozen as in the worker), renditions only queued.

"Old" is `parse_instance` with pydicom's `Dataset.to_json_dict` swapped in for our writer
(imaging/dicom/json_model.py), or, with --baseline, the `parse_instance` of another copy of
imaging/dicom/parse.py (`git show REV:imaging/dicom/parse.py > /tmp/parse_old.py`). Old and new
run interleaved, in alternating order, in one process: CPU time (process_time) per instance,
the median over the rounds [min-max], and new/old.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imaging.dicom import parse  # noqa: E402
from imaging.dicom.parse import BULK_DATA_THRESHOLD  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from imaging_pacs import _slice  # noqa: E402


def _instance(
    *, study: str, series: str, number: int, size: int, rng: np.random.Generator
) -> bytes:
    # The slices bench/imaging_pacs.py sends, as the bytes a worker reads.
    dataset = _slice(
        study=study, series=series, number=number, size=size, patient_id="BENCH-1", rng=rng
    )
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _series(count: int, size: int) -> list[bytes]:
    study, series, rng = generate_uid(), generate_uid(), np.random.default_rng(count)
    return [
        _instance(study=study, series=series, number=n + 1, size=size, rng=rng)
        for n in range(count)
    ]


def _modality_files(count: int) -> list[bytes]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    files = []
    for _ in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


def _pydicom_json(dataset: Dataset) -> dict[str, Any]:
    return dataset.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=lambda element: ""
    )


def _parse_with(writer: Callable[[Dataset], dict[str, Any]]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        original, parse.dataset_json = parse.dataset_json, writer
        try:
            return parse.parse_instance(data)
        finally:
            parse.dataset_json = original

    return run


def _baseline(path: str) -> Callable[[bytes], object]:
    spec = importlib.util.spec_from_file_location("baseline_parse", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_instance


def _cpu_ms_per_instance(run: Callable[[bytes], object], files: list[bytes]) -> float:
    start = time.process_time()
    for data in files:
        run(data)
    return (time.process_time() - start) * 1000 / len(files)


def _report(name: str, count: int, times: dict[str, list[float]]) -> None:
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    old_ms, new_ms = medians.values()
    print(
        f"{name} ({count} files, {len(times['old'])} rounds): "
        + ", ".join(
            f"{variant} {ms:.3f} ms [{min(times[variant]):.3f}-{max(times[variant]):.3f}]"
            for variant, ms in medians.items()
        )
        + f"; new/old {new_ms / old_ms:.2f}",
        flush=True,
    )


def _orders(rounds: int) -> Iterator[tuple[str, str]]:
    for round_number in range(rounds):
        yield ("old", "new") if round_number % 2 == 0 else ("new", "old")


def bench_parse(data: dict[str, Callable[[], list[bytes]]], variants: dict, rounds: int) -> None:
    for name, make_files in data.items():
        files = make_files()
        # Same metadata both ways, or the comparison means nothing.
        assert variants["old"](files[0]).metadata == variants["new"](files[0]).metadata
        times: dict[str, list[float]] = {"old": [], "new": []}
        for order in _orders(rounds):
            for variant in order:
                times[variant].append(_cpu_ms_per_instance(variants[variant], files))
        _report(f"parse, {name}", len(files), times)


def bench_ingest(data: dict[str, Callable[[], list[bytes]]], variants: dict, rounds: int) -> None:
    """The worker's whole path (the task `ingest_received_files`, renditions aside) on files
    already received, into a scratch SQLite database; a new study for every run. Receiving
    (writing the files, one row each) is not counted: the DICOM server does it."""
    scratch = tempfile.mkdtemp(prefix="imaging-parse-")
    os.environ["TELEMED_VAR_DIR"] = scratch
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemed.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from accounts.models import Organization
    from imaging.models import ReceivedFile
    from imaging.services import ingest
    from imaging.tasks import ingest_received_files
    from telemed.celery import app
    from telemed.heap import freeze_startup_objects

    # The task runs here, in this process; the renditions it queues are only queued.
    app.conf.task_always_eager = False
    call_command("migrate", verbosity=0)
    organization = Organization.objects.create(name="Bench clinic")
    freeze_startup_objects()  # as the worker does (telemed/celery.py)

    def run(files: list[bytes], parse_instance: Callable[[bytes], object]) -> float:
        with transaction.atomic():
            ids = [
                ingest.receive_file(
                    content=content,
                    source=ReceivedFile.Source.UPLOAD,
                    organization=organization,
                    queue_ingest=False,
                ).pk
                for content in files
            ]
        original, ingest.parse_instance = ingest.parse_instance, parse_instance
        start = time.process_time()
        try:
            assert ingest_received_files(ids) == len(ids)
            elapsed = time.process_time() - start
        finally:
            ingest.parse_instance = original
        assert not ReceivedFile.objects.filter(pk__in=ids).exclude(status="ingested").exists()
        return elapsed * 1000 / len(files)

    try:
        for name, make_files in data.items():
            times: dict[str, list[float]] = {"old": [], "new": []}
            for order in _orders(rounds):
                for variant in order:
                    times[variant].append(run(make_files(), variants[variant]))
            _report(f"ingest, {name}", len(make_files()), times)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--ct", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="another parse.py to compare with")
    parser.add_argument("--ingest", action="store_true", help="also the whole ingest path")
    parser.add_argument("--no-parse", action="store_true", help="skip the parse-only figures")
    args = parser.parse_args()
    data = {
        "small 128x128": lambda: _series(args.small, 128),
        "CT 512x512": lambda: _series(args.ct, 512),
        "CT_small.dcm copies": lambda: _modality_files(args.small),
    }
    old = _baseline(args.baseline) if args.baseline else _parse_with(_pydicom_json)
    variants = {"old": old, "new": parse.parse_instance}
    gc.collect()
    gc.freeze()  # the worker's start-up objects are frozen too (telemed/heap.py)
    if not args.no_parse:
        bench_parse(data, variants, args.rounds)
    if args.ingest:
        bench_ingest(data, variants, args.rounds)


if __name__ == "__main__":
    main()
