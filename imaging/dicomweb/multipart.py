"""multipart/related (RFC 2387) as DICOMweb uses it: writing responses part by part, reading
STOW-RS bodies part by part, and the Accept and Content-Type headers that go with them.

Knows nothing of the database. Parts are streamed: a response never holds more than one chunk
of one file, a request body is spooled to temporary files one part at a time.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.utils.translation import gettext as _

CRLF = b"\r\n"
READ_CHUNK = 256 * 1024
# A part kept in memory up to this size, then on disk: a STOW body of hundreds of MB never
# sits in memory, small instances never touch the disk twice.
SPOOL_IN_MEMORY = 4 * 1024 * 1024
MAX_PART_HEADERS = 16 * 1024


class MalformedMultipart(ValueError):
    """The body is not a well-formed multipart/related message; the message says where."""


@dataclass
class MediaRange:
    """One media type of an Accept or Content-Type header, with its parameters (lower-case
    names, unquoted values)."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def quality(self) -> float:
        try:
            return float(self.params.get("q", "1"))
        except ValueError:
            return 0.0


def _split_outside_quotes(header: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_media_type(value: str) -> MediaRange:
    """`multipart/related; type="application/dicom"; boundary=x` → its type and parameters."""
    pieces = _split_outside_quotes(value, ";")
    if not pieces:
        return MediaRange("")
    params = {}
    for piece in pieces[1:]:
        name, _equals, raw = piece.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"')
        params[name.strip().lower()] = raw
    return MediaRange(pieces[0].strip().lower(), params)


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of an Accept header, best first (an absent header accepts anything)."""
    ranges = [parse_media_type(item) for item in _split_outside_quotes(header or "*/*", ",")]
    ranges = [media for media in ranges if media.media_type and media.quality > 0]
    return sorted(ranges, key=lambda media: -media.quality)


def new_boundary() -> str:
    return uuid.uuid4().hex


def part_header(boundary: str, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def closing_delimiter(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


@dataclass
class Part:
    """One part to send: its content type and something that yields its bytes when the
    response gets to it (so files are opened one at a time)."""

    content_type: str
    chunks: Callable[[], Iterable[bytes]]
    headers: dict[str, str] = field(default_factory=dict)
    # The number of bytes `chunks` yields, when known before reading them (a stored file).
    size: int | None = None


def multipart_length(parts: list[Part], boundary: str) -> int | None:
    """The length of `stream_parts(parts, boundary)` when every part's size is known (then
    the answer can carry a Content-Length: a client shows progress, and reads it without
    chunked decoding); else None."""
    total = len(closing_delimiter(boundary))
    for part in parts:
        if not part.size:  # unknown, or empty: stream_parts would leave it out
            return None
        total += len(part_header(boundary, part.content_type, part.headers)) + part.size + 2
    return total


def stream_parts(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body of a multipart/related response, chunk by chunk; a part that yields nothing
    (it could not be made after the headers were sent) is left out."""
    for part in parts:
        produced = iter(part.chunks())
        first = next(produced, None)
        if first is None:
            continue
        yield part_header(boundary, part.content_type, part.headers) + first
        yield from produced
        yield CRLF
    yield closing_delimiter(boundary)


def file_chunks(open_file: Callable[[], IO[bytes]]) -> Iterator[bytes]:
    with open_file() as stream:
        while chunk := stream.read(READ_CHUNK):
            yield chunk


@dataclass
class ReceivedPart:
    """One part of a request body: its headers and its bytes spooled to a temporary file."""

    content_type: str
    headers: dict[str, str]
    file: IO[bytes]
    size: int


def _read_part_headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.split(CRLF):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise MalformedMultipart(_("a part header line has no colon: %r") % line[:80])
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return headers


def read_multipart(
    read: Callable[[int], bytes], boundary: str, *, max_parts: int = 100_000
) -> list[ReceivedPart]:
    """Read a multipart/related body through `read(n)` to the closing delimiter.

    Each part is spooled to its own temporary file as it streams by, so the body is never
    held in memory. A body cut short, or without the closing delimiter, raises
    `MalformedMultipart`, and the parts read so far are closed (nothing half-received is kept).
    """
    if not boundary or len(boundary) > 200:
        raise MalformedMultipart(_("the Content-Type has no usable boundary parameter"))
    dash_boundary = b"--" + boundary.encode("latin-1")
    delimiter = CRLF + dash_boundary
    parts: list[ReceivedPart] = []
    buffer = bytearray()
    is_finished = False

    def fill() -> bool:
        chunk = read(READ_CHUNK)
        if chunk:
            buffer.extend(chunk)
        return bool(chunk)

    try:
        # Preamble: up to the first boundary, which may open the body without a CRLF.
        buffer.extend(CRLF)
        while (start := buffer.find(delimiter)) < 0:
            del buffer[: max(0, len(buffer) - len(delimiter))]
            if not fill():
                raise MalformedMultipart(_("the body has no part (boundary not found)"))
        del buffer[: start + len(delimiter)]
        while not is_finished:
            while len(buffer) < 2 and fill():
                pass
            if buffer[:2] == b"--":
                is_finished = True
                break
            # Transport padding after the boundary, then CRLF, then the part headers.
            while (end := buffer.find(CRLF + CRLF)) < 0:
                if len(buffer) > MAX_PART_HEADERS:
                    raise MalformedMultipart(_("a part's headers are too long"))
                if not fill():
                    raise MalformedMultipart(_("the body ends inside a part's headers"))
            line_end = buffer.find(CRLF)
            if buffer[:line_end].strip(b" \t"):
                raise MalformedMultipart(_("the boundary line is followed by other text"))
            headers = _read_part_headers(bytes(buffer[line_end + 2 : end]))
            del buffer[: end + 4]
            if len(parts) >= max_parts:
                raise MalformedMultipart(_("more than %s parts") % max_parts)
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
            part = ReceivedPart(headers.get("content-type", ""), headers, spool, 0)
            parts.append(part)
            while (found := buffer.find(delimiter)) < 0:
                # Keep a tail that could be the start of a delimiter split across reads.
                keep = len(delimiter) - 1
                if len(buffer) > keep:
                    spool.write(buffer[: len(buffer) - keep])
                    part.size += len(buffer) - keep
                    del buffer[: len(buffer) - keep]
                if not fill():
                    raise MalformedMultipart(
                        _("the body ends inside part %s (no closing boundary)") % len(parts)
                    )
            spool.write(buffer[:found])
            part.size += found
            spool.seek(0)
            del buffer[: found + len(delimiter)]
    except BaseException:
        for part in parts:
            part.file.close()
        raise
    return parts
