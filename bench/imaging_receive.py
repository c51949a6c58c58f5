"""Receive benchmark: the cost of keeping one received file (`receive_file`), old against new.

    .venv/bin/python bench/imaging_receive.py [--small 2000] [--large 300] [--rounds 5]
        [--media DIR] [--insert]

Every C-STORE the DICOM server answers waits for `receive_file`: the SHA-256, the file under
MEDIA_ROOT, the ReceivedFile row. Here it runs as the DICOM server runs it (autocommit, no
ingest queued) into a scratch SQLite database (WAL, as the settings open it), on distinct
contents of 33 KB (a small instance) and 512 KB (a CT slice).

"Old" is a copy of `receive_file` as it was before (below: the storage API's `FieldFile.save`,
then `Model.save`); "new" is imaging.services.ingest.receive_file. They run interleaved, in
alternating order, in one process: per call, wall time (perf_counter) and CPU time
(process_time, which counts the kernel's work for the process too), the median over the
rounds [min-max], and new/old. The files of a run are deleted between runs, outside the timing.

MEDIA_ROOT is a scratch directory under --media (default: the system's temporary directory).
Creating a file is the kernel's work and varies a lot on a busy disk: `--media /dev/shm` shows
the Python side alone.

With --insert: the row INSERT alone, three ways the ORM offers (`Model.save`,
`bulk_create([one])`, `Model._do_insert`) and receive_file's own (`_insert_new`: the statement
compiled once), interleaved the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"small (33 KB)": 33_000, "large (512 KB)": 512_000}


def old_receive_file(
    *,
    content: bytes | IO[bytes],
    source: str,
    organization: Any,
    received_by: Any = None,
    calling_ae: str = "",
    batch: Any = None,
    original_name: str = "",
    queue_ingest: bool = True,
) -> Any:
    """`receive_file` before it wrote the file itself (the storage API, then Model.save)."""
    from django.core.files.base import ContentFile, File

    from imaging.models import ReceivedFile
    from imaging.services.ingest import _sha256, queue_ingest_of

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
    stored = ContentFile(content) if isinstance(content, bytes) else File(content)
    received.file.save(sha256, stored, save=False)
    received.save()
    if queue_ingest:
        queue_ingest_of([received.pk])
    return received


def _orders(rounds: int, variants: list[str]) -> Iterator[list[str]]:
    for round_number in range(rounds):
        yield variants if round_number % 2 == 0 else variants[::-1]


def _report(name: str, count: int, times: dict[str, list[tuple[float, float]]]) -> None:
    first = next(iter(times))
    medians = {
        variant: (
            statistics.median(wall for wall, _ in values),
            statistics.median(cpu for _, cpu in values),
        )
        for variant, values in times.items()
    }
    print(f"{name} ({count} calls, {len(times[first])} rounds), microseconds per call:")
    for variant, (wall, cpu) in medians.items():
        walls = [w for w, _ in times[variant]]
        cpus = [c for _, c in times[variant]]
        ratio = ""
        if variant != first:
            ratio = (
                f"   {variant}/{first}: wall {wall / medians[first][0]:.2f},"
                f" cpu {cpu / medians[first][1]:.2f}"
            )
        print(
            f"  {variant:>12}: wall {wall:7.1f} [{min(walls):.1f}-{max(walls):.1f}]"
            f"  cpu {cpu:7.1f} [{min(cpus):.1f}-{max(cpus):.1f}]{ratio}",
            flush=True,
        )


def _contents(size: int, count: int, start: int) -> list[bytes]:
    # Distinct contents (distinct hashes, so distinct names): a counter in front of random bytes.
    body = os.urandom(size - 8)
    return [(start + n).to_bytes(8, "big") + body for n in range(count)]


def _timed(call: Callable[[bytes], object], contents: list[bytes]) -> tuple[float, float]:
    wall = cpu = 0.0
    for content in contents:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        call(content)
        cpu += time.process_time() - cpu_start
        wall += time.perf_counter() - wall_start
    return wall * 1e6 / len(contents), cpu * 1e6 / len(contents)


def bench_receive(organization: Any, counts: dict[str, int], rounds: int, media: Path) -> None:
    from imaging.models import ReceivedFile
    from imaging.services import ingest

    def call_with(receive: Callable[..., Any]) -> Callable[[bytes], object]:
        def call(content: bytes) -> object:
            return receive(
                content=content,
                source=ReceivedFile.Source.STORE,
                organization=organization,
                calling_ae="BENCH",
                original_name="1.2.3.dcm",
                queue_ingest=False,
            )

        return call

    variants = {"old": call_with(old_receive_file), "new": call_with(ingest.receive_file)}
    # Same file, same row both ways, or the comparison means nothing.
    for number, call in enumerate(variants.values()):
        content = _contents(1000, 1, start=number)[0]
        received = call(content)
        with received.file.open("rb") as stored:
            assert stored.read() == content
        assert ReceivedFile.objects.get(pk=received.pk).file.name == received.file.name
    serial = 1 << 20
    for name, size in SIZES.items():
        count = counts[name]
        call_with(ingest.receive_file)(_contents(size, 1, start=serial)[0])  # warm up
        serial += 1
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for order in _orders(rounds, list(variants)):
            for variant in order:
                contents = _contents(size, count, start=serial)
                serial += count
                times[variant].append(_timed(variants[variant], contents))
                shutil.rmtree(media / "imaging", ignore_errors=True)
        _report(f"receive_file, {name}", count, times)


def bench_insert(organization: Any, count: int, rounds: int) -> None:
    """The row alone: the ways the ORM offers to INSERT one ReceivedFile."""
    from django.db import DEFAULT_DB_ALIAS

    from imaging.models import ReceivedFile
    from imaging.services import ingest

    meta = ReceivedFile._meta
    fields = [field for field in meta.local_concrete_fields if field is not meta.auto_field]

    def build() -> ReceivedFile:
        return ReceivedFile(
            source=ReceivedFile.Source.STORE,
            organization=organization,
            calling_ae="BENCH",
            original_name="1.2.3.dcm",
            size=33_000,
            sha256="0" * 64,
            file="imaging/received/2000/01/01/" + "0" * 64,
        )

    def save(_: bytes) -> object:
        received = build()
        received.save()
        return received.pk

    def bulk_create(_: bytes) -> object:
        (received,) = ReceivedFile.objects.bulk_create([build()])
        return received.pk

    def do_insert(_: bytes) -> object:
        received = build()
        returned = received._do_insert(
            ReceivedFile._base_manager, DEFAULT_DB_ALIAS, fields, meta.db_returning_fields, False
        )
        received.pk = returned[0][0]
        return received.pk

    def compiled_once(_: bytes) -> object:
        received = build()
        ingest._insert_new(received)
        return received.pk

    variants = {
        "save": save,
        "bulk_create": bulk_create,
        "_do_insert": do_insert,
        "compiled once": compiled_once,
    }
    dummy = [b""] * count
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for order in _orders(rounds, list(variants)):
        for variant in order:
            times[variant].append(_timed(variants[variant], dummy))
    _report("INSERT of one ReceivedFile", count, times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=2000, help="calls per run, 33 KB")
    parser.add_argument("--large", type=int, default=300, help="calls per run, 512 KB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--media", default=tempfile.gettempdir(), help="where MEDIA_ROOT goes")
    parser.add_argument("--insert", action="store_true", help="also the row INSERT alone")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="imaging-receive-"))
    media = Path(tempfile.mkdtemp(prefix="imaging-receive-media-", dir=args.media))
    os.environ["TELEMED_VAR_DIR"] = str(scratch)
    os.environ["MEDIA_ROOT"] = str(media)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemed.settings")
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from accounts.models import Organization

        assert media == settings.MEDIA_ROOT
        call_command("migrate", verbosity=0)
        organization = Organization.objects.create(name="Bench clinic")
        counts = {"small (33 KB)": args.small, "large (512 KB)": args.large}
        bench_receive(organization, counts, args.rounds, media)
        if args.insert:
            bench_insert(organization, args.small, args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    main()
