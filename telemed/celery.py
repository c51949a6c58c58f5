"""The Celery application shared by the web process, the worker and beat."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemed.settings")

app = Celery("telemed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_startup_objects(**kwargs: Any) -> None:
    from telemed.heap import freeze_startup_objects

    freeze_startup_objects()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: Any = None, **kwargs: Any) -> None:
    """Between tasks, what Django does between requests: close connections that are broken or
    older than CONN_MAX_AGE; keep the others (see CELERY_DB_REUSE_MAX in the settings). Not
    for a task run in-process (no broker): it may be inside the caller's transaction."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


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
