"""Where the current request came from, for the audit log, without passing `request` around.

The HTTP middleware (and, later, WebSocket consumers and protocol listeners) set it; the
audit service reads it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None = None
    channel: str = ""  # web, api, websocket, dicom, hl7, task


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "telemed_request_context",
    default=RequestContext(),  # noqa: B039  (a frozen dataclass: never mutated)
)


def current() -> RequestContext:
    return _current.get()


@contextmanager
def request_context(*, ip_address: str | None, channel: str) -> Iterator[None]:
    token = _current.set(RequestContext(ip_address=ip_address, channel=channel))
    try:
        yield
    finally:
        _current.reset(token)
