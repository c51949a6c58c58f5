"""PACS benchmark: Telemed's DICOM server and DICOMweb side by side with Orthanc, in one run.

    .venv/bin/python bench/imaging_pacs.py [--ct-slices 300] [--small 2000] [--rounds 3]
    .venv/bin/python bench/imaging_pacs.py --big-gb 2
    .venv/bin/python bench/imaging_pacs.py --wado-only [--rounds 3]

Both servers get the same generated data (a 512x512 16-bit CT series, and many small
128x128 instances), sent with dcmtk's `storescu` (TCP_NODELAY=1, Nagle off on both ends), and
are asked the same DICOMweb questions. Telemed runs the process set `make run` starts
(runplatform: web, worker, beat, DICOM server, embedded Redis, SQLite) in a scratch directory,
configured as deployed (DEBUG off, see PRODUCTION_ENV) as Orthanc runs as its package installs
it: Debian's, with its default SQLite index and the DICOMweb plugin, also in a scratch
directory. Needs the Debian packages dcmtk, orthanc and orthanc-dicomweb.

Both servers run at once and are measured in turns, round after round (Telemed first in odd
rounds, Orthanc first in even ones), so that both see the same state of a shared machine, whose
speed drifts by a factor of two within minutes; figures are medians over the rounds, and the
Telemed/Orthanc ratio of each round is printed too. Measured:
- C-STORE ingest: from the first byte sent until every instance is queryable (QIDO-RS says
  so), instances/s and MB/s; each round sends newly generated instances (new UIDs);
- WADO-RS: a whole series (multipart), the series metadata, and rendered JPEG frames
  (p50/p95 over every slice, first requests) of the round's CT series; from the second round
  on, the first round's frames are also asked for again;
- with --big-gb N (one server after the other, no other measure): the peak memory (RSS, all
  processes of each server) while ingesting an N GB study;
- with --wado-only: the CT series only (sent, then the WADO-RS measures), both servers up
  at once, in turns for --rounds rounds.

Prints a Markdown table (figures and Telemed/Orthanc ratios) to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
NODELAY = {"TCP_NODELAY": "1"}


# --- Data ---------------------------------------------------------------------------------


def _slice(
    *, study: str, series: str, number: int, size: int, patient_id: str, rng: np.random.Generator
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
        patient_id,
        "BENCH^PATIENT",
        "19700101",
        "O",
    )
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20261126", "120000", "B1", "1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription, ds.SeriesDescription = "Benchmark", f"{size}px"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, number
    ds.ImagePositionPatient = [0, 0, float(number)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = -1024, 1, 40, 400
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) ** 2 + (y - size / 2) ** 2) < (size * 0.4) ** 2
    pixels = np.where(body, 1000 + rng.integers(0, 120, (size, size)), 0).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    return ds


def write_series(directory: Path, *, count: int, size: int, patient_id: str) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(count * size)
    total = 0
    for number in range(1, count + 1):
        path = directory / f"{number:06d}.dcm"
        _slice(
            study=study, series=series, number=number, size=size, patient_id=patient_id, rng=rng
        ).save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return {"study": study, "series": series, "count": count, "bytes": total, "dir": directory}


# --- Processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 120, **kwargs: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2, **kwargs).status_code < 500:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(child) for child in children)
    return found


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in kB."""
    total = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by a process and its descendants."""
    total = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_quiet(servers: list[Server], *, busy: float = 0.05, timeout: float = 60) -> None:
    """Wait until every server has done its work in the background (Telemed's renditions of
    the series just received, say): less than `busy` of a core over a second. Otherwise that
    work would be counted in the next measure, of either server."""
    pids = {server.name: server.process.pid for server in servers if server.process}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(1)
        if all(tree_cpu_seconds(pid) - before[name] < busy for name, pid in pids.items()):
            return
    print(f"still busy after {timeout:.0f} s; measuring anyway", flush=True)


class PeakMemory:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self.start_kb = self.peak_kb = tree_rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Server:
    name: str
    aet: str
    dicom_port: int
    base: str  # DICOMweb root, ending without a slash
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    calling_aet: str = "BENCH"

    def qido_count(self, study: str) -> int:
        response = requests.get(
            f"{self.base}/studies",
            params={"StudyInstanceUID": study, "includefield": "00201208"},
            headers={**self.headers, "Accept": "application/dicom+json"},
            timeout=30,
        )
        if response.status_code == 204 or not response.content:
            return 0
        response.raise_for_status()
        studies = response.json()
        if not studies:
            return 0
        return int(studies[0].get("00201208", {}).get("Value", [0])[0])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def start_orthanc(scratch: Path) -> Server:
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(scratch / "storage"),
        "IndexDirectory": str(scratch / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "UnknownSopClassAccepted": True,
        "Plugins": [ORTHANC_DICOMWEB],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpsCACertificates": "",
        "StableAge": 1,
    }
    config_path = scratch / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = (scratch / "orthanc.log").open("w")
    process = subprocess.Popen(
        [ORTHANC, str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **NODELAY},
        start_new_session=True,
    )
    server = Server("Orthanc", "ORTHANC", dicom_port, f"http://127.0.0.1:{http_port}/dicom-web")
    server.process = process
    wait_http(f"http://127.0.0.1:{http_port}/system")
    return server


def demo_api_token(env: dict[str, str]) -> str:
    """An API token of the demo clinician, who reads what the demo CT sends (load_demo
    registers DEMO_CT for the demo clinic)."""
    printed = subprocess.run(
        [PYTHON, "manage.py", "api_token", "clinician@demo.kg"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return printed.strip().splitlines()[-1]


# Telemed as deployed (DEBUG off), not as `make run`'s development mode: Orthanc runs as its
# package installs it, and DEBUG makes Django log every query (on SQLite with an extra query
# per statement to quote its parameters). With no demo world in that mode, the reader, the
# sending modality and the token are set up here as an operator would (admin pages, then
# `manage.py api_token`).
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "benchmark-only-" + "0123456789abcdef" * 4,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",  # plain HTTP on 127.0.0.1: no proxy in front
}
BENCH_SETUP = """
from accounts.models import Membership, Organization, Region, User
from accounts.services.users import grant_membership
from imaging.models import DicomNode
from rest_framework.authtoken.models import Token

clinic, _ = Organization.objects.get_or_create(
    name="Benchmark clinic",
    defaults={"kind": Organization.Kind.RURAL_CLINIC, "region": Region.NARYN},
)
reader = User.objects.filter(email="reader@bench.example").first() or User.objects.create_user(
    "reader@bench.example", None, full_name="Benchmark Reader"
)
grant_membership(user=reader, organization=clinic, role=Membership.Role.CLINICIAN, specialties=[])
DicomNode.objects.get_or_create(
    ae_title="BENCH_CT",
    defaults={"organization": clinic, "host": "127.0.0.1", "description": "benchmark sender"},
)
print(Token.objects.get_or_create(user=reader)[0].key)
"""


def start_telemed(scratch: Path) -> Server:
    http_port, dicom_port, hl7_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        **PRODUCTION_ENV,
        "TELEMED_VAR_DIR": str(scratch),
        "DICOM_PORT": str(dicom_port),
        "HL7_PORT": str(hl7_port),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    manage = [PYTHON, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    token = subprocess.run(
        [*manage, "shell", "-c", BENCH_SETUP],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    log = (scratch / "telemed.log").open("w")
    process = subprocess.Popen(
        [*manage, "runplatform", "--port", str(http_port), "--no-demo"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{http_port}"
    wait_http(f"{base}/healthz", timeout=180)
    server = Server(
        "Telemed",
        "TELEMED",
        dicom_port,
        f"{base}/dicomweb",
        headers={"Authorization": f"Bearer {token}"},
        calling_aet="BENCH_CT",
    )
    server.process = process
    # Wait for the DICOM server to accept associations.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if echo(server):
            break
        time.sleep(0.5)
    return server


def echo(server: Server) -> bool:
    result = subprocess.run(
        [
            "echoscu",
            "-aet",
            server.calling_aet,
            "-aec",
            server.aet,
            "127.0.0.1",
            str(server.dicom_port),
        ],
        env={**os.environ, **NODELAY},
        capture_output=True,
    )
    return result.returncode == 0


# --- Measurements ---------------------------------------------------------------------------


def store_until_queryable(server: Server, data: dict, timeout: float = 1800) -> float:
    """Seconds from the start of storescu until QIDO-RS counts every instance."""
    started = time.perf_counter()
    subprocess.run(
        [
            "storescu",
            "-aet",
            server.calling_aet,
            "-aec",
            server.aet,
            "+sd",
            "+r",
            "-nh",
            "127.0.0.1",
            str(server.dicom_port),
            str(data["dir"]),
        ],
        env={**os.environ, **NODELAY},
        check=True,
        capture_output=True,
    )
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if server.qido_count(data["study"]) >= data["count"]:
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError(f"{server.name}: not every instance became queryable")


def timed(function: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def instance_uids(server: Server, data: dict) -> list[str]:
    response = requests.get(
        f"{server.base}/studies/{data['study']}/series/{data['series']}/instances",
        params={"limit": 100000},
        headers={**server.headers, "Accept": "application/dicom+json"},
        timeout=60,
    )
    response.raise_for_status()
    return [item["00080018"]["Value"][0] for item in response.json()]


def frame_times(server: Server, session: requests.Session, data: dict) -> list[float]:
    """Seconds for each rendered JPEG frame of the series, one after the other."""
    series_url = f"{server.base}/studies/{data['study']}/series/{data['series']}"
    times = []
    for uid in instance_uids(server, data):
        started = time.perf_counter()
        response = session.get(
            f"{series_url}/instances/{uid}/frames/1/rendered",
            headers={"Accept": "image/jpeg"},
            timeout=60,
        )
        times.append(time.perf_counter() - started)
        response.raise_for_status()
        assert response.content[:3] == b"\xff\xd8\xff", server.name
    return times


def wado_measures(server: Server, data: dict, again: dict | None = None) -> dict[str, float]:
    """Metadata, whole series and first-request frames of `data` (the round's CT series), and
    frames of `again` (an earlier round's, rendered before) asked for again."""
    series_url = f"{server.base}/studies/{data['study']}/series/{data['series']}"
    session = requests.Session()
    session.headers.update(server.headers)

    def metadata() -> None:
        response = session.get(
            f"{series_url}/metadata", headers={"Accept": "application/dicom+json"}, timeout=120
        )
        response.raise_for_status()
        assert len(response.json()) == data["count"], server.name

    def whole_series() -> None:
        with session.get(
            series_url,
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            stream=True,
            timeout=600,
        ) as response:
            response.raise_for_status()
            received = sum(len(chunk) for chunk in response.iter_content(1 << 20))
            assert received >= data["bytes"] * 0.9, (server.name, received)

    metadata()  # warm caches once, as a viewer's second visit would
    first = frame_times(server, session, data)
    measures = {
        "frame_p50_ms": percentile(first, 0.5) * 1000,
        "frame_p95_ms": percentile(first, 0.95) * 1000,
    }
    if again is not None:
        repeated = frame_times(server, session, again)
        measures["again_frame_p50_ms"] = percentile(repeated, 0.5) * 1000
        measures["again_frame_p95_ms"] = percentile(repeated, 0.95) * 1000
    metadata_times = timed(metadata, 5)
    series_times = timed(whole_series, 3)
    return {
        "metadata_s": statistics.median(metadata_times),
        "series_s": statistics.median(series_times),
        "series_mb_s": data["bytes"] / 2**20 / statistics.median(series_times),
        **measures,
    }


# --- Run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def running(start: object, scratch: Path) -> Iterator[Server]:
    server = start(scratch)  # type: ignore[operator]
    try:
        yield server
    finally:
        server.stop()


def bench_big(start: object, scratch: Path, big: dict) -> dict:
    """Peak memory of one server's processes while it ingests the big study."""
    results: dict[str, float] = {}
    with running(start, scratch) as server:
        assert server.process is not None
        with PeakMemory(server.process.pid) as memory:
            store_until_queryable(server, big, timeout=3600)
        results["big_start_rss_mb"] = memory.start_kb / 1024
        results["big_peak_rss_mb"] = memory.peak_kb / 1024
        results["big_growth_rss_mb"] = (memory.peak_kb - memory.start_kb) / 1024
    return results


def bench_interleaved(
    scratch: Path, make_datasets: object, rounds: int
) -> tuple[dict[str, dict], dict[str, list[float]], dict]:
    """Both servers up; each round sends new data sets to one server then the other (the
    order alternating), then the WADO-RS measures are taken in turns on the first round's CT
    series. Returns the medians per server, the Telemed/Orthanc ratio of every round per
    measure, and the first round's data sets (for the report)."""
    names = ("telemed", "orthanc")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for name in names:
        (scratch / name).mkdir()
    first: dict = {}
    with (
        running(start_telemed, scratch / "telemed") as telemed,
        running(start_orthanc, scratch / "orthanc") as orthanc,
    ):
        servers = {"telemed": telemed, "orthanc": orthanc}
        # Warm-up, not measured: the first instances a server receives also load code and
        # open files and connections (Telemed's worker processes import their libraries).
        warm_up = write_series(scratch / "warm-up", count=20, size=128, patient_id="WARM-UP")
        for server in servers.values():
            store_until_queryable(server, warm_up)
        for number in range(rounds):
            datasets = make_datasets(scratch / f"data-{number}")  # type: ignore[operator]
            first = first or datasets
            order = names if number % 2 == 0 else names[::-1]
            measures: dict[str, dict] = {name: {} for name in names}
            for label, data in datasets.items():
                for name in order:
                    wait_quiet(list(servers.values()))
                    seconds = store_until_queryable(servers[name], data)
                    measures[name][f"{label}_inst_s"] = data["count"] / seconds
                    measures[name][f"{label}_mb_s"] = data["bytes"] / 2**20 / seconds
            for name in order:
                wait_quiet(list(servers.values()))
                again = first["ct"] if number else None
                measures[name].update(wado_measures(servers[name], datasets["ct"], again))
                runs[name].append(measures[name])
            print(f"round {number + 1}: {json.dumps(measures)}", flush=True)
            for data in datasets.values():  # stored by both: the files are not needed again
                shutil.rmtree(data["dir"], ignore_errors=True)
    results: dict[str, dict] = {name: {} for name in names}
    ratios: dict[str, list[float]] = {}
    keys = dict.fromkeys(key for run in runs["telemed"] for key in run)  # frames asked again: 2+
    for key in keys:
        pairs = [
            (t[key], o[key])
            for t, o in zip(runs["telemed"], runs["orthanc"], strict=True)
            if key in t and key in o
        ]
        results["telemed"][key] = statistics.median(t for t, _ in pairs)
        results["orthanc"][key] = statistics.median(o for _, o in pairs)
        ratios[key] = [t / o for t, o in pairs]
    return results, ratios, first


DESCRIPTIONS = {"ct": "CT slices 512x512 16-bit", "small": "small 128x128 instances"}
ROWS = [
    ("ct_inst_s", "C-STORE ingest, CT 512x512 (instances/s, until queryable)", True),
    ("ct_mb_s", "C-STORE ingest, CT (MB/s)", True),
    ("small_inst_s", "C-STORE ingest, small 128x128 (instances/s, until queryable)", True),
    ("small_mb_s", "C-STORE ingest, small (MB/s)", True),
    ("series_s", "WADO-RS whole CT series (s)", False),
    ("series_mb_s", "WADO-RS whole CT series (MB/s)", True),
    ("metadata_s", "WADO-RS series metadata (s)", False),
    ("frame_p50_ms", "WADO-RS rendered JPEG frame, first request, p50 (ms)", False),
    ("frame_p95_ms", "WADO-RS rendered JPEG frame, first request, p95 (ms)", False),
    ("again_frame_p50_ms", "WADO-RS rendered JPEG frame asked again p50 (ms)", False),
    ("again_frame_p95_ms", "WADO-RS rendered JPEG frame asked again p95 (ms)", False),
    ("big_start_rss_mb", "Memory of all processes before the big study (MB)", False),
    ("big_peak_rss_mb", "Peak memory of all processes while ingesting the big study (MB)", False),
    ("big_growth_rss_mb", "Growth of memory while ingesting the big study (MB)", False),
]


def report(
    args: argparse.Namespace,
    telemed: dict,
    orthanc: dict,
    datasets: dict,
    ratios: dict[str, list[float]] | None = None,
) -> str:
    lines = [
        f"### PACS: Telemed vs Orthanc — {time.strftime('%Y-%m-%d')}, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "Data: "
        + "; ".join(
            [
                f"{data['count']} {DESCRIPTIONS[label]} ({data['bytes'] / 2**20:.0f} MB) per round"
                for label, data in datasets.items()
            ]
            + ([f"a big study of {args.big_gb} GB"] if args.big_gb else [])
        )
        + f". {args.rounds} rounds in turns. dcmtk storescu with TCP_NODELAY=1.",
        "",
        "| measure | Telemed | Orthanc | Telemed / Orthanc (better when) | each round |",
        "|---|---:|---:|---|---|",
    ]
    for key, label, higher_is_better in ROWS:
        if key not in telemed or key not in orthanc:
            continue
        ratio = telemed[key] / orthanc[key] if orthanc[key] else float("nan")
        better = "> 1" if higher_is_better else "< 1"
        rounds = " / ".join(f"{value:.2f}" for value in (ratios or {}).get(key, []))
        lines.append(
            f"| {label} | {telemed[key]:.2f} | {orthanc[key]:.2f} | {ratio:.2f} ({better}) "
            f"| {rounds} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct-slices", type=int, default=300)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--big-gb", type=float, default=0.0)
    parser.add_argument(
        "--wado-only",
        action="store_true",
        help="only the CT series and the WADO-RS measures, both servers running, taken in turns",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of measures in turns")
    args = parser.parse_args()
    for program in ("storescu", "echoscu"):
        if not shutil.which(program):
            sys.exit(f"{program} is missing: install the Debian package 'dcmtk'")
    if not Path(ORTHANC).exists() or not Path(ORTHANC_DICOMWEB).exists():
        sys.exit("Orthanc is missing: install the Debian packages 'orthanc orthanc-dicomweb'")

    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as scratch_name:
        scratch = Path(scratch_name)
        # The demo clinic's patient, so that Telemed's demo clinician may read the studies.
        patient_id = "11503198500123"
        print("generating data...", flush=True)
        if args.big_gb:
            count = int(args.big_gb * 2**30 / (512 * 512 * 2))
            big = write_series(scratch / "data/big", count=count, size=512, patient_id=patient_id)
            results = {}
            for name, start in (("telemed", start_telemed), ("orthanc", start_orthanc)):
                print(f"benchmarking {name}...", flush=True)
                (scratch / name).mkdir()
                results[name] = bench_big(start, scratch / name, big)
                print(json.dumps(results[name], indent=1), flush=True)
            print(report(args, results["telemed"], results["orthanc"], {}))
            return

        def make_datasets(directory: Path) -> dict[str, dict]:
            datasets = {
                "ct": write_series(
                    directory / "ct", count=args.ct_slices, size=512, patient_id=patient_id
                )
            }
            if not args.wado_only:
                datasets["small"] = write_series(
                    directory / "small", count=args.small, size=128, patient_id=patient_id
                )
            return datasets

        results, ratios, datasets = bench_interleaved(scratch, make_datasets, max(args.rounds, 1))
        print(report(args, results["telemed"], results["orthanc"], datasets, ratios))


if __name__ == "__main__":
    main()
