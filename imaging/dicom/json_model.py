"""The DICOM JSON model (PS3.18 F.2) of a dataset read from a file, written from the encoded
elements.

pydicom's `Dataset.to_json_dict` first turns every element into a `DataElement` (value
objects, validation) and then into JSON: most of the cost of indexing an instance. Here the
common elements go from their encoded bytes straight to JSON, with the same result as pydicom's
(same keys, same values, same VRs). Whatever this module does not handle surely (an ambiguous
or unknown VR, an odd character set, a value pydicom would correct or refuse) is handed to
pydicom for that element, and the whole dataset is when pydicom is configured in any way that
changes how it reads values. The tests compare both on every file pydicom ships.
"""

from __future__ import annotations

import base64
import re
import struct
import sys
from collections.abc import Callable
from typing import Any

import pydicom
from pydicom import config
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from pydicom.tag import _LUT_DESCRIPTOR_TAGS
from pydicom.valuerep import AMBIGUOUS_VR

# The fallback rules below mirror pydicom 3.0's reading code; another version is not assumed
# to read values the same way, so it gets pydicom's own writer.
_IS_KNOWN_PYDICOM = pydicom.__version__.startswith("3.0.")

# Default character repertoire VRs are decoded as ISO 8859-1 whatever the Specific Character
# Set says (pydicom's "iso8859").
_LATIN_1 = "latin-1"
_ESC = 0x1B

# A decimal or integer string pydicom reads as a float or int without a warning.
_DS_VALUES = re.compile(
    r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:\\[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)*"
)
_IS_VALUES = re.compile(r"[+-]?\d{1,11}(?:\\[+-]?\d{1,11})*")

# VR: struct code (standard sizes), bytes per value, memoryview code (native sizes: its "l"
# would be 8 bytes) to read little-endian values in place on a little-endian machine.
_NUMBER_FORMATS = {
    "US": ("H", 2, "H"),
    "SS": ("h", 2, "h"),
    "UL": ("L", 4, "I"),
    "SL": ("l", 4, "i"),
    "UV": ("Q", 8, "Q"),
    "SV": ("q", 8, "q"),
    "FL": ("f", 4, "f"),
    "FD": ("d", 8, "d"),
}
_IS_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_BYTES_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
# Decoded as ISO 8859-1, split on backslashes after trailing padding is removed.
_PLAIN_STRING_VRS = {"AS", "CS", "DA", "DT", "TM"}
# Decoded with the Specific Character Set, each value without its trailing padding.
_TEXT_VRS = {"LO", "SH", "UC"}
_SINGLE_TEXT_VRS = {"LT", "ST", "UT"}


# pydicom "fixes" the first value of these when reading (a tuple there: a set is faster here).
_LUT_DESCRIPTORS = frozenset(int(tag) for tag in _LUT_DESCRIPTOR_TAGS)

# "GGGGEEEE" of the tags seen so far; bounded, as private tags can be anything.
_KEYS: dict[int, str] = {}
_MAX_KEYS = 20_000


class _Fallback(Exception):
    """This element is left to pydicom."""


def dataset_json(
    dataset: Dataset, *, bulk_data_threshold: int, bulk_data_uri: str = ""
) -> dict[str, Any]:
    """What `dataset.to_json_dict(bulk_data_threshold=...,
    bulk_data_element_handler=lambda element: bulk_data_uri)` returns, computed faster.

    Binary values longer than 3/4 of `bulk_data_threshold` (base64 makes them a third longer)
    are replaced by `{"BulkDataURI": bulk_data_uri}`. Raises what pydicom raises on a damaged
    element."""

    def handler(element: DataElement) -> str:
        return bulk_data_uri

    if not _reads_as_known():
        return dataset.to_json_dict(
            bulk_data_threshold=bulk_data_threshold, bulk_data_element_handler=handler
        )
    writer = _Writer(bulk_data_threshold, bulk_data_uri, handler)
    return writer.dataset(dataset)


def _reads_as_known() -> bool:
    """Whether pydicom reads values as its defaults do (the rules here assume so)."""
    return (
        _IS_KNOWN_PYDICOM
        and config.data_element_callback is None
        and hooks.raw_element_vr is raw_element_vr
        and hooks.raw_element_value is raw_element_value
        and not hooks.raw_element_kwargs
        and config.settings.reading_validation_mode != config.RAISE
        and config.replace_un_with_known_vr
        and not config.datetime_conversion
        and not config.use_DS_numpy
        and not config.use_DS_decimal
        and not config.use_IS_numpy
    )


class _Writer:
    def __init__(
        self,
        bulk_data_threshold: int,
        bulk_data_uri: str,
        handler: Callable[[DataElement], str],
    ) -> None:
        self.threshold = bulk_data_threshold
        # pydicom's test: a value is bulk data when its base64 form would pass the threshold.
        self.inline_limit = (bulk_data_threshold // 4) * 3
        self.bulk_data_uri = bulk_data_uri
        self.handler = handler

    def dataset(self, dataset: Dataset) -> dict[str, Any]:
        # The encodings pydicom decodes this dataset's text with (Dataset.__getitem__).
        encodings = dataset.original_character_set or dataset._character_set
        if isinstance(encodings, str):
            encodings = [encodings]
        encoding = encodings[0] if encodings else default_encoding
        result: dict[str, Any] = {}
        # A snapshot: handing an element to pydicom replaces it in the dataset.
        keys = _KEYS
        for tag, element in list(dataset.items()):
            key = keys.get(int(tag))  # an int: a Tag compares in Python
            if key is None:
                key = f"{tag:08X}"
                if len(keys) < _MAX_KEYS:
                    keys[int(tag)] = key
            if type(element) is RawDataElement:
                try:
                    result[key] = self.raw_element(dataset, element, encoding)
                    continue
                except _Fallback:
                    element = dataset[tag]
            result[key] = self.element(element)
        return result

    def element(self, element: DataElement) -> dict[str, Any]:
        if element.VR == "SQ":
            return {"vr": "SQ", "Value": [self.dataset(item) for item in element.value]}
        return element.to_json_dict(
            bulk_data_element_handler=self.handler, bulk_data_threshold=self.threshold
        )

    def raw_element(self, dataset: Dataset, raw: RawDataElement, encoding: str) -> dict[str, Any]:
        value, tag = raw.value, raw.tag
        if value is None and not raw.length:
            value = b""  # an empty element is read as None
        if type(value) is not bytes or tag in _LUT_DESCRIPTORS:
            raise _Fallback  # deferred, buffered, or "fixed" by pydicom on reading
        vr = raw.VR
        if vr is None:
            vr = _implicit_vr(dataset, raw)
        elif vr == "UN":
            if tag.is_private:
                vr = _private_vr(dataset, raw)
            elif _is_public(tag):
                raise _Fallback  # pydicom replaces UN with the VR it knows
        if vr in AMBIGUOUS_VR or vr == "SQ":
            raise _Fallback
        if not value:
            if vr not in _KNOWN_VRS:
                raise _Fallback
            return {"vr": vr}
        if vr in _BYTES_VRS:
            if len(value) > self.inline_limit:
                return {"vr": vr, "BulkDataURI": self.bulk_data_uri}
            return {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}
        write = _WRITERS.get(vr)
        if write is None:
            raise _Fallback
        values = write(value, raw.is_little_endian, vr, encoding)
        return {"vr": vr, "Value": values} if values else {"vr": vr}


def _is_public(tag: int) -> bool:
    try:
        dictionary_VR(tag)
    except KeyError:
        return False
    return True


def _private_vr(dataset: Dataset, raw: RawDataElement) -> str:
    # pydicom's own lookup: private creator, private dictionary, else UN.
    data: dict[str, Any] = {}
    raw_element_vr(raw, data, ds=dataset)
    return data["VR"]


def _implicit_vr(dataset: Dataset, raw: RawDataElement) -> str:
    if raw.tag.is_private:
        return _private_vr(dataset, raw)
    try:
        return dictionary_VR(raw.tag)
    except KeyError:
        raise _Fallback from None  # group lengths, unknown tags: pydicom decides (and warns)


def _decode(value: bytes, encoding: str) -> str:
    if _ESC in value:
        raise _Fallback  # ISO 2022 code extensions: pydicom switches character sets
    try:
        return value.decode(encoding)
    except (LookupError, UnicodeError):
        raise _Fallback from None  # pydicom warns and replaces the undecodable bytes


def _split(text: str) -> list[str]:
    # One empty value is no value; several empty ones ("\\") are kept, as pydicom keeps them.
    items = text.split("\\")
    return [] if len(items) == 1 and not items[0] else items


def _plain_strings(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    return _split(value.decode(_LATIN_1).rstrip(" \x00"))


def _application_entities(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    items = [item.strip() for item in value.decode(_LATIN_1).split("\\")]
    return [] if len(items) == 1 and not items[0] else items


def _uids(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    return _split(value.decode(_LATIN_1).rstrip("\x00 "))


def _uri(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    text = value.decode(_LATIN_1).rstrip()
    return [text] if text else []


def _decimals(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    text = value.decode(_LATIN_1).strip().rstrip(" \x00")
    if not text:
        return []
    if not _DS_VALUES.fullmatch(text):
        raise _Fallback
    items = text.split("\\")
    if any(len(item) > 16 for item in items):
        raise _Fallback  # too long for DS: pydicom warns
    return [float(item) for item in items]


def _integers(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    text = value.decode(_LATIN_1).rstrip(" \x00")
    if not text:
        return []
    if not _IS_VALUES.fullmatch(text):
        raise _Fallback
    return [int(item) for item in text.split("\\")]


def _texts(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    items = [item.rstrip("\x00 ") for item in _decode(value, encoding).split("\\")]
    return [] if len(items) == 1 and not items[0] else items


def _single_text(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    text = _decode(value, encoding).rstrip("\x00 ")
    return [text] if text else []


def _person_names(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    text = _decode(value.rstrip(b"\x00 "), encoding)
    if not text:
        return []
    names = []
    for name in text.split("\\"):
        groups = name.split("=")
        while groups and not groups[-1]:
            groups.pop()
        if not groups or len(groups) > 3:
            raise _Fallback  # pydicom fails on an empty name among several, or warns
        person = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            person["Ideographic"] = groups[1]
        if len(groups) > 2:
            person["Phonetic"] = groups[2]
        names.append(person)
    return names


def _numbers(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    code, size, native_code = _NUMBER_FORMATS[vr]
    count, remainder = divmod(len(value), size)
    if remainder:
        raise _Fallback  # pydicom refuses the length
    if little and _IS_LITTLE_ENDIAN_HOST:
        return memoryview(value).cast(native_code).tolist()
    return list(struct.unpack(f"{'<' if little else '>'}{count}{code}", value))


def _tags(value: bytes, little: bool, vr: str, encoding: str) -> list[Any]:
    count, remainder = divmod(len(value), 4)
    if remainder:
        raise _Fallback
    halves = struct.unpack(f"{'<' if little else '>'}{count * 2}H", value)
    return [f"{halves[i] << 16 | halves[i + 1]:08X}" for i in range(0, len(halves), 2)]


_Write = Callable[[bytes, bool, str, str], list[Any]]
_WRITERS: dict[str, _Write] = {
    **dict.fromkeys(_PLAIN_STRING_VRS, _plain_strings),
    **dict.fromkeys(_TEXT_VRS, _texts),
    **dict.fromkeys(_SINGLE_TEXT_VRS, _single_text),
    **dict.fromkeys(_NUMBER_FORMATS, _numbers),
    "AE": _application_entities,
    "UI": _uids,
    "UR": _uri,
    "DS": _decimals,
    "IS": _integers,
    "PN": _person_names,
    "AT": _tags,
}
_KNOWN_VRS = set(_WRITERS) | _BYTES_VRS
