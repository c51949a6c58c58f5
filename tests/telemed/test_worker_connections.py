"""The Celery worker keeps its database connections from task to task (CELERY_DB_REUSE_MAX,
telemed/celery.py), closing only old or broken ones, as Django does between requests."""

from __future__ import annotations

from typing import Any

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection

from imaging.tasks import ingest_waiting_files
from telemed.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def _between_two_tasks() -> None:
    """What a worker process runs around a task: Celery's Django fixup and our handlers."""
    fixup = DjangoWorkerFixup(app)
    task = ingest_waiting_files  # a worker's task: not eager
    fixup.on_task_postrun(sender=task)
    task_postrun.send(sender=task, task_id="1", task=task, args=(), kwargs={})
    fixup.on_task_prerun(sender=task)
    task_prerun.send(sender=task, task_id="2", task=task, args=(), kwargs={})


@pytest.fixture
def kept_connection() -> Any:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("an in-memory SQLite database is never closed: run with DATABASE_URL")
    connection.ensure_connection()
    return connection.connection


def test_a_connection_younger_than_its_max_age_serves_the_next_task(kept_connection: Any):
    connection.close_at = None  # CONN_MAX_AGE=None: kept for good (the worker: 600 s)

    _between_two_tasks()

    assert connection.connection is kept_connection


def test_an_expired_or_broken_connection_is_closed_between_tasks(kept_connection: Any):
    connection.close_at = 0  # older than its CONN_MAX_AGE

    _between_two_tasks()

    assert connection.connection is None or connection.connection is not kept_connection
