"""The stored metadata of an instance is the DICOM JSON model pydicom writes, to the last value,
whatever the file holds (every VR, character sets, sequences, damaged elements)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from imaging.dicom.parse import BULK_DATA_THRESHOLD, NotDicom, dataset_json, parse_instance
from tests.factories.imaging import ct_dataset, dicom_bytes

TEST_FILES = sorted(path for path in get_testdata_files() if Path(path).is_file())


def _pydicom_json(dataset: Dataset) -> dict[str, Any]:
    return dataset.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=lambda element: ""
    )


def _canonical(model: dict[str, Any]) -> str:
    # JSON text tells 1 from 1.0 and compares NaN, which dict equality does not.
    return json.dumps(model, sort_keys=True)


def _assert_same_json(read: Any) -> None:
    """`read()` gives a freshly read dataset each time: converting elements changes it."""
    expected = _canonical(_pydicom_json(read()))

    assert _canonical(dataset_json(read())) == expected


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", TEST_FILES, ids=[Path(path).name for path in TEST_FILES])
def test_metadata_of_every_pydicom_test_file_is_what_pydicom_writes(path: str) -> None:
    def read() -> Dataset:
        return pydicom.dcmread(path, force=True)

    try:
        expected = _canonical(_pydicom_json(read()))
    except Exception as error:
        # Damaged on purpose: refused by pydicom, it must be refused here too.
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever pydicom raises
            dataset_json(read())
        pytest.skip(f"pydicom cannot convert it either: {error!r}"[:200])

    assert _canonical(dataset_json(read())) == expected


def _file_meta(transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def _every_vr() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.RetrieveAETitle = ["  STORE_SCP ", "ARCHIVE"]  # AE, multi-valued, padded
    ds.PatientAge = "042Y"  # AS
    ds.FrameIncrementPointer = [0x00181063, 0x00181065]  # AT, multi-valued
    ds.ImageType = ["ORIGINAL ", "PRIMARY", "", "AXIAL"]  # CS with an empty value
    ds.StudyDate = "20261126"  # DA
    ds.PixelSpacing = ["0.5", "-1.25e-3"]  # DS
    ds.SliceThickness = "  2.50 "  # DS, padded
    ds.AcquisitionDateTime = "20261126101500.123456+0600"  # DT
    ds.add_new(0x00189089, "FD", [0.0, 1.0, -1.0])  # DiffusionGradientOrientation
    ds.add_new(0x00089459, "FL", 1.5)  # ExaminedBodyThickness
    ds.InstanceNumber = "-12"  # IS
    ds.ReferencedFrameNumber = ["1", "2", "3"]  # IS, multi-valued
    ds.PatientID = "ID-1"  # LO
    ds.OtherPatientIDs = ["A", "B\u00e9"]  # LO, multi-valued, non-ASCII
    ds.AdditionalPatientHistory = "line one\\ with a backslash, kept in LT  "  # LT
    ds.add_new(0x00420011, "OB", b"\x01\x02\x03")  # EncapsulatedDocument, small: inline
    ds.add_new(0x00640009, "OF", b"\x00\x00\x80\x3f" * 3)  # VectorGridData
    ds.add_new(0x00660040, "OL", b"\x01\x00\x00\x00" * 2)  # LongPrimitivePointIndexList
    ds.add_new(0x00720081, "OV", b"\x01" * 8)  # SelectorOVValue
    ds.add_new(0x00660022, "OD", b"\x00" * 8)  # DoublePointCoordinatesData
    ds.add_new(0x7FE00010, "OW", b"\x00\x01" * 2048)  # PixelData, bulk
    ds.PatientName = "Иванов^Иван=Иванов^Иван=Ivanov^Ivan"  # PN with three groups
    ds.ReferringPhysicianName = ""  # PN, empty
    ds.StationName = "CT-1"  # SH
    ds.add_new(0x00189219, "SS", [-1, 2])  # TagAngleSecondAxis
    ds.add_new(0x00186020, "SL", -70000)  # ReferencePixelX0
    ds.add_new(0x00720082, "SV", [-(2**40), 3])  # SelectorSVValue
    ds.add_new(0x0008040C, "UV", [2**63])  # FileOffsetInContainer
    ds.InstitutionAddress = "ST text\\not split  "  # ST
    ds.StudyTime = "101500.5"  # TM
    ds.add_new(0x00080119, "UC", ["long code", "two"])  # LongCodeValue
    ds.SOPInstanceUID = generate_uid()  # UI
    ds.add_new(0x00080014, "UI", "")  # InstanceCreatorUID, empty
    ds.SimpleFrameList = [1, 2, 4_000_000_000]  # UL
    ds.add_new(0x00080120, "UR", "https://example.org/code  ")  # URNCodeValue
    ds.Rows = 128  # US
    ds.add_new(0x0008030E, "UT", "free text\\not split ")  # PrivateDataElementDescription
    ds.add_new(0x00191010, "UN", b"private bytes")  # private, unknown creator: stays UN
    block = ds.private_block(0x0029, "TELEMED TEST", create=True)
    block.add_new(0x01, "LO", "private text")
    block.add_new(0x02, "US", [1, 2])
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "T-D0050", "SRT"
    item.CodeMeaning = "Тело"  # Cyrillic inside a sequence, same character set
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = generate_uid()
    inner.ReferencedFrameNumber = ""  # empty IS
    item.ReferencedImageSequence = Sequence([inner, Dataset()])  # nested, with an empty item
    ds.AnatomicRegionSequence = Sequence([item])
    ds.ReferencedStudySequence = Sequence([])  # empty sequence
    return ds


def _read_back(ds: Dataset, transfer_syntax: str) -> Any:
    ds.file_meta = _file_meta(transfer_syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return lambda: pydicom.dcmread(io.BytesIO(data))


@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_every_value_representation_is_written_as_pydicom_writes_it(transfer_syntax: str) -> None:
    read = _read_back(_every_vr(), transfer_syntax)

    _assert_same_json(read)

    model = dataset_json(read())
    assert model["00100010"]["Value"] == [
        {"Alphabetic": "Иванов^Иван", "Ideographic": "Иванов^Иван", "Phonetic": "Ivanov^Ivan"}
    ]
    assert model["7FE00010"] == {"vr": "OW", "BulkDataURI": ""}
    assert model["00280030"]["Value"] == [0.5, -0.00125]
    assert model["00280009"]["Value"] == ["00181063", "00181065"]
    assert "Value" not in model["00080090"]


@pytest.mark.parametrize(
    ("character_set", "name"),
    [
        ("ISO_IR 192", "Асанбеков^Нурлан^Үмөтбекович"),  # Kyrgyz letters need UTF-8
        ("ISO_IR 144", "Смирнова^Анна^Петровна"),  # Russian in ISO 8859-5
        ("ISO_IR 100", "Müller^Jürgen"),
        (None, "DOE^JOHN"),
    ],
)
def test_patient_names_in_kyrgyz_and_russian_are_kept(character_set: str | None, name: str) -> None:
    ds = ct_dataset(size=8)
    if character_set:
        ds.SpecificCharacterSet = character_set
    ds.PatientName = name
    ds.InstitutionName = name.split("^")[0]
    ds.OtherPatientNames = [name, "=" + name]
    read = _read_back(ds, ExplicitVRLittleEndian)

    _assert_same_json(read)

    assert dataset_json(read())["00100010"]["Value"] == [{"Alphabetic": name}]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    ("keyword", "raw_value"),
    [
        ("SliceThickness", b"2,5 "),  # DS with a comma: pydicom decides
        ("SliceThickness", b"1.0\\\\2.0 "),  # DS with an empty value among several
        ("InstanceNumber", b"1.0 "),  # IS written as a decimal
        ("InstanceNumber", b" 7"),  # IS with a leading space
        ("PatientName", b"A\\\\B "),  # PN with an empty name among several
        ("PatientName", b"=== "),  # PN of empty groups only
        ("PatientName", b"\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"),  # ISO 2022 escape sequences
        ("PatientID", b"\xff\xfe bad utf-8"),  # undecodable in UTF-8
        ("Rows", b"\x80\x00\x00"),  # US of an odd length
    ],
)
def test_odd_values_come_out_as_pydicom_makes_them(keyword: str, raw_value: bytes) -> None:
    ds = ct_dataset(size=8)
    ds.SpecificCharacterSet = "ISO_IR 192"
    data = dicom_bytes(ds)
    element = ds[keyword]
    # Replace the encoded value (explicit VR, 2-byte length) by the odd one.
    header = element.tag.group.to_bytes(2, "little") + element.tag.elem.to_bytes(2, "little")
    start = data.index(header + element.VR.encode())
    old_length = int.from_bytes(data[start + 6 : start + 8], "little")
    value = raw_value + (b" " if len(raw_value) % 2 else b"")
    data = (
        data[: start + 6]
        + len(value).to_bytes(2, "little")
        + value
        + data[start + 8 + old_length :]
    )

    def read() -> Dataset:
        return pydicom.dcmread(io.BytesIO(data))

    try:
        expected = _canonical(_pydicom_json(read()))
    except Exception:
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever pydicom raises
            dataset_json(read())
        return
    assert _canonical(dataset_json(read())) == expected


def test_truncated_file_is_still_refused() -> None:
    data = dicom_bytes(ct_dataset(size=128))[:-5000]

    with pytest.raises(NotDicom, match="truncated"):
        parse_instance(data)


def test_metadata_keeps_the_transfer_syntax_for_viewers() -> None:
    parsed = parse_instance(dicom_bytes(ct_dataset(size=32)))

    assert parsed.metadata["00020010"] == {"vr": "UI", "Value": [ExplicitVRLittleEndian]}
    assert parsed.metadata["7FE00010"]["BulkDataURI"] == ""


def _as_pydicom_reads_it(ds: Dataset, keyword: str, limit: int = 64) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value if value is not None else "").strip()[:limit]


def _number_as_pydicom_reads_it(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is None or -(2**31) < number < 2**31 else None


def _index_fields_agree_with_pydicom(data: bytes) -> None:
    parsed = parse_instance(data)
    ds = pydicom.dcmread(io.BytesIO(data))

    assert parsed.study["dicom_patient_name"] == str(ds.get("PatientName") or "").strip()[:324]
    assert parsed.study["referring_physician"] == str(ds.get("ReferringPhysicianName") or "")[:324]
    for field, keyword, limit in [
        ("study_instance_uid", "StudyInstanceUID", 64),
        ("dicom_patient_id", "PatientID", 64),
        ("dicom_birth_date", "PatientBirthDate", 8),
        ("dicom_sex", "PatientSex", 16),
        ("study_date", "StudyDate", 8),
        ("study_time", "StudyTime", 16),
        ("accession_number", "AccessionNumber", 16),
        ("description", "StudyDescription", 64),
    ]:
        assert parsed.study[field] == _as_pydicom_reads_it(ds, keyword, limit), field
    assert parsed.series["modality"] == (_as_pydicom_reads_it(ds, "Modality", 16) or "OT")
    assert parsed.series["series_number"] == _number_as_pydicom_reads_it(ds, "SeriesNumber")
    assert parsed.instance["instance_number"] == _number_as_pydicom_reads_it(ds, "InstanceNumber")
    assert parsed.instance["rows"] == _number_as_pydicom_reads_it(ds, "Rows")
    assert parsed.instance["number_of_frames"] == max(
        _number_as_pydicom_reads_it(ds, "NumberOfFrames") or 1, 1
    )


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", TEST_FILES, ids=[Path(path).name for path in TEST_FILES])
def test_index_fields_of_every_pydicom_test_file_are_what_pydicom_reads(path: str) -> None:
    data = Path(path).read_bytes()
    try:
        parse_instance(data)
    except NotDicom as refusal:
        pytest.skip(f"refused: {refusal}"[:200])

    _index_fields_agree_with_pydicom(data)


@pytest.mark.filterwarnings("ignore:The number of PN components")
@pytest.mark.parametrize(
    "name",
    [
        "Иванов^Иван",
        "Иванов^Иван=Иванов^Иван",
        "Асанбеков^Нурлан=Асанбеков^Нурлан=Asanbekov^Nurlan",
        "=Иванов",
        "Иванов^Иван=Иванов=Ivanov=extra",
    ],
)
def test_patient_name_in_the_index_is_what_pydicom_reads(name: str) -> None:
    ds = ct_dataset(size=8)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = name
    ds.ReferringPhysicianName = [name, "DOE^JANE"]

    _index_fields_agree_with_pydicom(dicom_bytes(ds))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("use_DS_decimal", True),
        ("use_none_as_empty_text_VR_value", True),
        ("replace_un_with_known_vr", False),
    ],
)
def test_metadata_follows_pydicom_when_it_reads_values_differently(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: bool
) -> None:
    monkeypatch.setattr(pydicom.config, setting, value)
    read = _read_back(_every_vr(), ExplicitVRLittleEndian)

    _assert_same_json(read)
