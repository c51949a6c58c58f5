"""One write statement on the shared SQLite file, waiting for its lock in short steps.

SQLite lets one connection write at a time. A connection that finds the lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15... ms between tries: a write that finds a
worker's 5 ms transaction under way waits 8 ms. The DICOM server keeps each file a modality
sends with one INSERT before it answers, and the modality sends the next file only then, while
the ingest worker commits a batch every few tens of milliseconds: py-spy showed the server's
association thread waiting in that INSERT for 39 % of a 2000-instance C-STORE (the worker held
the lock for a fifth of that time). Here the statement is tried at once and, while the lock is
taken, again after 0.2 ms, then after longer steps up to 2 ms.

Only for a statement in autocommit (its own transaction, nothing to redo but itself) on
SQLite; elsewhere, and inside a transaction, the statement simply runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.db import OperationalError

FIRST_STEP = 0.0002
LONGEST_STEP = 0.002


def execute_soon_after_lock(connection: Any, cursor: Any, sql: str, params: Sequence) -> None:
    """`cursor.execute(sql, params)`, with the waiting described above on SQLite."""
    if connection.vendor != "sqlite" or not connection.get_autocommit():
        cursor.execute(sql, params)
        return
    raw = connection.connection
    patience = float(connection.settings_dict.get("OPTIONS", {}).get("timeout", 5))
    deadline = time.monotonic() + patience
    step = FIRST_STEP
    raw.execute("PRAGMA busy_timeout = 0")  # SQLITE_BUSY at once: we wait here instead
    try:
        while True:
            try:
                cursor.execute(sql, params)
                return
            except OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + step > deadline:
                    raise
            time.sleep(step)
            step = min(step * 2, LONGEST_STEP)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(patience * 1000)}")
