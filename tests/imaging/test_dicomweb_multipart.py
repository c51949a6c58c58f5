"""Reading STOW-RS bodies part by part, whatever sizes the network hands them over in, and the
Accept headers clients send."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pytest

from imaging.dicomweb.multipart import (
    MalformedMultipart,
    Part,
    parse_accept,
    read_multipart,
    stream_parts,
)


def _reader(body: bytes, step: int) -> Callable[[int], bytes]:
    stream = io.BytesIO(body)
    return lambda size: stream.read(min(size, step))


def _body(parts: list[bytes], boundary: str = "b1", preamble: bytes = b"") -> bytes:
    return (
        preamble
        + b"".join(
            f"--{boundary}  \r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
            for part in parts
        )
        + f"--{boundary}--\r\nepilogue".encode()
    )


@pytest.mark.parametrize("step", [1, 3, 7, 64, 1 << 20])
def test_parts_come_out_whole_whatever_the_read_sizes(step: int) -> None:
    # Contents that look like a boundary but are not one must survive too.
    contents = [os.urandom(3000), b"\r\n--b\r\n-b1\r\n--", b"", os.urandom(10)]

    parts = read_multipart(_reader(_body(contents, preamble=b"ignored\r\n"), step), "b1")

    assert [part.file.read() for part in parts] == [
        contents[0],
        contents[1],
        contents[2],
        contents[3],
    ]
    assert [part.size for part in parts] == [len(c) for c in contents]
    assert {part.content_type for part in parts} == {"application/dicom"}


def test_our_own_multipart_output_reads_back() -> None:
    contents = [b"first", os.urandom(1000)]
    parts = [Part("application/dicom", lambda c=c: [c]) for c in contents]
    body = b"".join(stream_parts(parts, "zz"))

    assert [p.file.read() for p in read_multipart(_reader(body, 5), "zz")] == contents


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"no boundary at all", "boundary not found"),
        (b"--b1\r\nContent-Type: application/dicom\r\n\r\nhalf a file", "no closing boundary"),
        (b"--b1\r\nContent-Type application/dicom\r\n\r\nx\r\n--b1--", "no colon"),
        (b"--b1\r\nContent-Type: application/dicom", "inside a part's headers"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMultipart, match=reason):
        read_multipart(_reader(body, 4), "b1")


def test_accept_header_with_quoted_parameters_and_quality() -> None:
    ranges = parse_accept(
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1;q=0.5, '
        'multipart/related; type="application/dicom", image/jpeg;q=0'
    )

    assert [(r.media_type, r.params.get("transfer-syntax")) for r in ranges] == [
        ("multipart/related", None),
        ("multipart/related", "1.2.840.10008.1.2.1"),
    ]
    assert ranges[0].params["type"] == "application/dicom"
