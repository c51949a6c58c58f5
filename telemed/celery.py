"""The Celery application shared by the web process, the worker and beat."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemed.settings")

app = Celery("telemed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_startup_objects(**kwargs: Any) -> None:
    from telemed.heap import freeze_startup_objects

    freeze_startup_objects()


class HeartbeatScheduler(PersistentScheduler):
    """Beat's own scheduler, which also tells /healthz that beat is alive.

    The heartbeat is written by beat itself rather than by a task, so a stopped worker does
    not make beat look dead.
    """

    _last_heartbeat = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now - self._last_heartbeat >= 5:
            from telemed.health import record_heartbeat

            record_heartbeat("beat")
            self._last_heartbeat = now
        return super().tick(*args, **kwargs)
