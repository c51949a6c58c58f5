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
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
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


class ThreadedRequest(ASGIRequest):
    """A request answered in a worker thread: streamed content may be a plain iterator,
    which is pulled here batch by batch (an async one would cost a hop per chunk)."""


class _SyncHandler(ASGIHandler):
    request_class = ThreadedRequest

    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    def respond(self, scope: Scope, body_file: Any) -> tuple[HttpResponseBase, bytes | None]:
        """The response, and its content unless it is streamed (then the caller closes it)."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=ASGIHandler, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._handler_class = ASGIHandler
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
            response, content = await sync_to_async(self._handler.respond, thread_sensitive=False)(
                scope, body_file
            )
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
        close = sync_to_async(response.close, thread_sensitive=False)
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
                pull = sync_to_async(next_batch, thread_sensitive=False)
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
