"""Reading a received DICOM file: is it DICOM, is it whole, and what does the index need.

Knows nothing of HTTP or the database; ingest (imaging/services/ingest.py) calls it.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from imaging.dicom import json_model

# Bulk data is left out of the stored metadata (PS3.18 F.2.7): WADO-RS serves it separately.
BULK_DATA_THRESHOLD = 1024
BULK_DATA_TAGS = {"7FE00010", "7FE00008", "7FE00009", "00420011", "54000100"}


class NotDicom(ValueError):
    """The bytes are not a DICOM file (or not a usable one); the message says why."""


@dataclass
class ParsedInstance:
    dataset: Dataset
    transfer_syntax_uid: str
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Attributes:
    """The values of a dataset's attributes as pydicom gives them, read from its DICOM JSON
    where that holds the same value (strings, integers): converting each element again
    cost as much as writing the whole JSON."""

    # VRs whose JSON value is the value pydicom gives (a DS is a float in JSON, text in pydicom).
    SAME_VALUE_VRS = frozenset(
        ("AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT")
        + ("IS", "SL", "SS", "SV", "UL", "US", "UV")
    )

    def __init__(self, dataset: Dataset, metadata: dict[str, Any]) -> None:
        self.dataset, self.metadata = dataset, metadata

    def get(self, keyword: str, default: Any = None) -> Any:
        element = self.metadata.get(_json_key(keyword))
        if element is None:
            return default
        if element["vr"] == "PN":
            return self._person_name(keyword, element, default)
        if element["vr"] not in self.SAME_VALUE_VRS:
            return self.dataset.get(keyword, default)
        values = element.get("Value")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def _person_name(self, keyword: str, element: dict[str, Any], default: Any) -> Any:
        values = element.get("Value")
        if not values:
            return None
        # pydicom's text of a name joins all its groups; the JSON model keeps three, so a name
        # with a phonetic group (maybe more after it) or several names are taken from pydicom.
        if len(values) > 1 or "Phonetic" in values[0]:
            return self.dataset.get(keyword, default)
        groups = values[0]
        if "Ideographic" in groups:
            return f"{groups['Alphabetic']}={groups['Ideographic']}"
        return groups["Alphabetic"]


@functools.cache
def _json_key(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def _text(dataset: Dataset | _Attributes, keyword: str, limit: int = 64) -> str:
    value = dataset.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue | list):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


# The index keeps numbers (InstanceNumber, SeriesNumber...) in 32-bit integer columns.
INT32 = 2**31


def _int(dataset: Dataset | _Attributes, keyword: str) -> int | None:
    value = dataset.get(keyword)
    try:
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is None or -INT32 < number < INT32 else None


def read_dataset(source: bytes | IO[bytes], *, stop_before_pixels: bool = False) -> FileDataset:
    """Parse a DICOM Part 10 file (or a bare dataset with a meta header missing, as some
    modalities write); refuse anything else with a clear reason."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        dataset = pydicom.dcmread(stream, stop_before_pixels=stop_before_pixels, force=False)
    except InvalidDicomError as error:
        raise NotDicom("not a DICOM file (no DICM preamble)") from error
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise NotDicom(f"the DICOM file is damaged: {error}") from error
    return dataset


def dataset_json(dataset: Dataset) -> dict[str, Any]:
    """The DICOM JSON model of `dataset` without its bulk data (pixel data and the like)."""
    # The URIs are filled in by DICOMweb when it serves the metadata (it knows its base URL).
    return json_model.dataset_json(
        dataset, bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_uri=""
    )


def _check_pixel_data(dataset: Dataset, attributes: _Attributes, transfer_syntax: str) -> None:
    """A file cut short (a dropped link, a full disk) usually ends inside the pixel data, which
    pydicom then reads short without complaint: compare with what the image header promises."""
    pixel_bytes = dataset.PixelData
    if not pixel_bytes:
        raise NotDicom("the pixel data is empty")
    if UID(transfer_syntax).is_encapsulated:
        # Encapsulated: the fragments must parse up to the sequence delimiter.
        from pydicom.encaps import generate_fragments

        fragments = list(generate_fragments(pixel_bytes))
        if not fragments:
            raise NotDicom("the compressed pixel data has no fragments")
        return
    frames = max(_int(attributes, "NumberOfFrames") or 1, 1)
    expected = (
        (_int(attributes, "Rows") or 0)
        * (_int(attributes, "Columns") or 0)
        * (_int(attributes, "SamplesPerPixel") or 1)
        * frames
        * (_int(attributes, "BitsAllocated") or 8)
        + 7
    ) // 8
    if len(pixel_bytes) < expected:
        raise NotDicom(
            f"the file is truncated: {len(pixel_bytes)} bytes of pixel data, {expected} expected"
        )


def _check_uids(dataset: Dataset | _Attributes) -> None:
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = _text(dataset, keyword)
        if not value:
            raise NotDicom(f"the dataset has no {keyword}")
        if not UID(value).is_valid:
            raise NotDicom(f"{keyword} is not a valid UID: {value!r}")


def parse_instance(data: bytes | IO[bytes]) -> ParsedInstance:
    """Read and validate one instance; `NotDicom` says what is wrong with it."""
    dataset = read_dataset(data)
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        raise NotDicom("the file meta information has no transfer syntax")
    try:
        # Touch every element so that a truncated or malformed one fails now, not later.
        metadata = dataset_json(dataset)
    except Exception as error:  # pydicom raises many kinds on a damaged dataset
        # A missing or invalid UID is the reason given first, as it always was.
        _check_uids(dataset)
        raise NotDicom(f"the DICOM file is damaged: {error}") from error
    attributes = _Attributes(dataset, metadata)
    _check_uids(attributes)
    # Viewers read the transfer syntax from the metadata to pick a decoder.
    metadata["00020010"] = {"vr": "UI", "Value": [transfer_syntax]}
    try:
        if "PixelData" in dataset:
            _check_pixel_data(dataset, attributes, transfer_syntax)
    except NotDicom:
        raise
    except Exception as error:
        raise NotDicom(f"the DICOM file is damaged: {error}") from error

    rows, columns = _int(attributes, "Rows"), _int(attributes, "Columns")
    if "PixelData" in dataset and (not rows or not columns):
        raise NotDicom("the image has pixel data but no size (Rows, Columns)")
    patient_name = attributes.get("PatientName")
    return ParsedInstance(
        dataset=dataset,
        transfer_syntax_uid=transfer_syntax,
        study={
            "study_instance_uid": _text(attributes, "StudyInstanceUID"),
            "dicom_patient_id": _text(attributes, "PatientID"),
            "dicom_patient_name": str(patient_name or "").strip()[:324],
            "dicom_birth_date": _text(attributes, "PatientBirthDate", 8),
            "dicom_sex": _text(attributes, "PatientSex", 16),
            "study_date": _text(attributes, "StudyDate", 8),
            "study_time": _text(attributes, "StudyTime", 16),
            "accession_number": _text(attributes, "AccessionNumber", 16),
            "study_id": _text(attributes, "StudyID", 16),
            "description": _text(attributes, "StudyDescription"),
            "referring_physician": str(attributes.get("ReferringPhysicianName", "") or "")[:324],
        },
        series={
            "series_instance_uid": _text(attributes, "SeriesInstanceUID"),
            "modality": _text(attributes, "Modality", 16) or "OT",
            "series_number": _int(attributes, "SeriesNumber"),
            "description": _text(attributes, "SeriesDescription"),
            "body_part": _text(attributes, "BodyPartExamined", 16),
            "series_date": _text(attributes, "SeriesDate", 8),
        },
        instance={
            "sop_instance_uid": _text(attributes, "SOPInstanceUID"),
            "sop_class_uid": _text(attributes, "SOPClassUID"),
            "instance_number": _int(attributes, "InstanceNumber"),
            "transfer_syntax_uid": transfer_syntax,
            "number_of_frames": max(_int(attributes, "NumberOfFrames") or 1, 1),
            "rows": rows,
            "columns": columns,
        },
        metadata=metadata,
    )
