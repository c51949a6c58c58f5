"""A write on the shared SQLite file waits for another process's write lock (telemed.sqlite)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connections
from django.db.backends.sqlite3.base import DatabaseWrapper

from telemed.sqlite import execute_soon_after_lock


@pytest.fixture
def database(tmp_path: Path, django_db_blocker: Any) -> Iterator[tuple[Path, DatabaseWrapper]]:
    # A file of its own, not the test database: two connections to it, as two processes.
    path = tmp_path / "shared.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE kept (name TEXT)")
    settings = {
        **connections["default"].settings_dict,
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {"timeout": 0.3},
    }
    wrapper = DatabaseWrapper(settings, alias="shared-file")
    with django_db_blocker.unblock():
        yield path, wrapper
        wrapper.close()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO kept VALUES ('written by the other process')")
    return other


def test_the_write_is_made_once_the_other_writer_commits(
    database: tuple[Path, DatabaseWrapper],
) -> None:
    path, wrapper = database
    other = _hold_write_lock(path)
    wrapper.ensure_connection()
    threading.Timer(0.05, other.execute, ["COMMIT"]).start()

    with wrapper.cursor() as cursor:
        execute_soon_after_lock(wrapper, cursor, "INSERT INTO kept VALUES (%s)", ["ours"])
        cursor.execute("SELECT name FROM kept ORDER BY rowid")
        assert [name for (name,) in cursor.fetchall()] == ["written by the other process", "ours"]
        # The connection waits as configured again for its other statements.
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 300
    other.close()


def test_a_lock_held_past_the_timeout_is_the_usual_error(
    database: tuple[Path, DatabaseWrapper],
) -> None:
    path, wrapper = database
    other = _hold_write_lock(path)

    with wrapper.cursor() as cursor, pytest.raises(OperationalError, match="locked"):
        execute_soon_after_lock(wrapper, cursor, "INSERT INTO kept VALUES (%s)", ["ours"])
    other.execute("ROLLBACK")
    other.close()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM kept")
        assert cursor.fetchone()[0] == 0
