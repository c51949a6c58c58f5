"""DICOMweb reads in the web process with one thread hop per request.

Django's ASGI handler runs a request through synchronous middleware in several hops between
the event loop and worker threads (the request_started signal, a thread per request, the
middleware and view, the response's close), about 3 ms per request on these machines: more
than serving a cached rendered frame. A viewer reads hundreds of frames, so GET and HEAD under
/dicomweb/ (and the viewer's frame URLs) are run here instead: the same middleware, view and
signals, synchronously, in one worker thread, as a WSGI server would run them. The response
goes out as Django would send it.

Streamed answers (whole studies and series) are pulled in the same way: a batch of chunks per
hop, the next batch read while the current one is sent.

These requests run in a pool of threads of their own, which live as long as the process, each
request in its thread's own context, kept from one request to the next, again as under a WSGI
server. So what Django keeps per context, the cache's Redis client and its connection, serves
every request of the thread; in a fresh context per request (Django's ASGI handler) each request
opened a Redis connection of its own. An SQLite connection is kept too (see
_keep_sqlite_connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections, connections
from django.http import HttpResponseBase
from django.urls import set_script_prefix

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# DICOMweb, and the viewer's own frames (the same reads with the browser session).
PREFIXES = ("/dicomweb/", "/imaging/instances/")
READ_METHODS = ("GET", "HEAD")
# One hop reads this much of a streamed answer (several files of a series at a time).
STREAM_BATCH = 4 * 1024 * 1024
# As many threads as asyncio's default pool: reads wait on files and the database as much as
# they compute.
READ_THREADS = min(32, (os.cpu_count() or 1) + 4)
_read_threads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="dicomweb")
_thread_state = threading.local()


def in_read_thread(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return sync_to_async(function, thread_sensitive=False, executor=_read_threads)


def _keep_sqlite_connections() -> None:
    """Keep this thread's SQLite connections open for its next request.

    Opening one costs about 0.6 ms (the WAL and synchronous pragmas, the schema read on the
    first query): more than a cached frame's own queries. An SQLite connection holds no server
    resource, and these threads never end, so it is not left behind. Server databases are
    left as configured (their connections are pooled or closed by CONN_MAX_AGE)."""
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "sqlite" and connection.connection is not None:
            connection.close_at = None


class ThreadedRequest(ASGIRequest):
    """A request answered in a worker thread: streamed content may be a plain iterator,
    which is pulled here batch by batch (an async one would cost a hop per chunk)."""


class _SyncHandler(ASGIHandler):
    request_class = ThreadedRequest

    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    def respond(self, scope: Scope, body_file: Any) -> tuple[HttpResponseBase, bytes | None]:
        """The response, and its content unless it is streamed (then the caller closes it);
        run in this thread's own context (see the module's description)."""
        context = getattr(_thread_state, "context", None)
        if context is None:
            context = _thread_state.context = contextvars.Context()
        return context.run(self._respond, scope, body_file)

    def _respond(self, scope: Scope, body_file: Any) -> tuple[HttpResponseBase, bytes | None]:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=ASGIHandler, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._handler_class = ASGIHandler
        _keep_sqlite_connections()
        if response.streaming:
            # The view's queries are done; the files are read in other threads.
            close_old_connections()
            return response, None
        content = response.content
        response.close()  # request_finished: the database connection is closed or kept
        return response, content


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", cookie.output(header="").encode("ascii").strip())
        for cookie in response.cookies.values()
    ]
    return headers


def next_batch(chunks: Iterator[bytes]) -> bytes:
    """The next STREAM_BATCH bytes or so of `chunks` in one piece; b"" at the end."""
    batch, size = [], 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= STREAM_BATCH:
            break
    return b"".join(batch)


class DicomwebReads:
    """ASGI app: GET and HEAD under PREFIXES as described above; all else goes to `app`."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self._handler: _SyncHandler | None = None

    def _is_read(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope.get("method") in READ_METHODS
            and scope.get("path", "").startswith(PREFIXES)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_read(scope):
            await self.app(scope, receive, send)
            return
        if self._handler is None:
            self._handler = _SyncHandler()
        body_file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed below)
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b"
        )
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body_file.write(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body_file.seek(0)
            response, content = await in_read_thread(self._handler.respond)(scope, body_file)
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _headers(response),
                }
            )
            if content is not None:
                await send({"type": "http.response.body", "body": content})
            else:
                await self._stream(response, receive, send)
        finally:
            body_file.close()

    async def _stream(self, response: Any, receive: Receive, send: Send) -> None:
        close = in_read_thread(response.close)
        # A client that goes away stops the reading of files for it.
        gone = asyncio.ensure_future(receive())
        try:
            if response.is_async:
                async for chunk in response.streaming_content:
                    if gone.done():
                        return
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                chunks = iter(response.streaming_content)
                pull = in_read_thread(next_batch)
                batch = await pull(chunks)
                while batch and not gone.done():
                    following = asyncio.ensure_future(pull(chunks))
                    try:
                        await send({"type": "http.response.body", "body": batch, "more_body": True})
                    finally:
                        batch = await following
                if gone.done():
                    return
            await send({"type": "http.response.body", "body": b""})
        finally:
            if not gone.done():
                gone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gone
            await close()
