"""Health of the platform: the database, Redis, the worker, beat and every other process.

Long-running processes other than web and worker call `record_heartbeat(name)` every few
seconds; /healthz reports a process as alive while its heartbeat is fresh.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

HEARTBEAT_KEY = "telemed:heartbeat:{process}"


def _redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def record_heartbeat(process: str) -> None:
    """Note that `process` is alive now; a no-op without Redis (everything is in-process)."""
    if not settings.REDIS_URL:
        return
    _redis_client().set(
        HEARTBEAT_KEY.format(process=process),
        f"{time.time():.3f}",
        ex=settings.HEARTBEAT_MAX_AGE_SECONDS,
    )


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any driver error means the database is not usable
        return {"ok": False, "error": str(error)}
    return {"ok": True, "vendor": connection.vendor}


def check_redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "detail": "not configured: in-process channel layer and cache"}
    try:
        _redis_client().ping()
    except redis.RedisError as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True}


def check_worker() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "detail": "not configured: tasks run inside the calling process"}
    from telemed.celery import app

    try:
        with app.connection_for_write(url=settings.REDIS_URL) as broker:
            replies = app.control.ping(timeout=1.0, connection=broker)
    except Exception as error:  # broker unreachable
        return {"ok": False, "error": str(error)}
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return {"ok": False, "error": "no worker answered a ping within 1 s"}
    return {"ok": True, "workers": workers}


def check_heartbeat(process: str) -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "detail": "not configured: no Redis, so no separate processes"}
    try:
        raw = _redis_client().get(HEARTBEAT_KEY.format(process=process))
    except redis.RedisError as error:
        return {"ok": False, "error": str(error)}
    if raw is None:
        return {"ok": False, "error": "no heartbeat: the process is not running"}
    age = time.time() - float(raw)
    return {
        "ok": age <= settings.HEARTBEAT_MAX_AGE_SECONDS,
        "seconds_since_heartbeat": round(age, 1),
    }


def platform_health() -> dict[str, dict[str, Any]]:
    parts: dict[str, dict[str, Any]] = {
        "database": check_database(),
        "redis": check_redis(),
    }
    for process in settings.PLATFORM_PROCESSES:
        if process == "web":
            parts["web"] = {"ok": True, "pid": os.getpid()}
        elif process == "worker":
            parts["worker"] = check_worker()
        else:
            parts[process] = check_heartbeat(process)
    return parts


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    parts = platform_health()
    healthy = all(part["ok"] for part in parts.values())
    # One entry per part, each with a boolean `ok`; the status code sums them up.
    return JsonResponse(parts, status=200 if healthy else 503)
