"""Generated DICOM for tests: small CT-like images made with pydicom, never downloaded data."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from accounts.models import Organization
from imaging.models import DicomNode


def ct_dataset(
    *,
    patient_id: str = "TEST-1",
    patient_name: str = "Test^Patient",
    birth_date: str = "19850315",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    instance_number: int = 1,
    size: int = 64,
    modality: str = "CT",
    study_date: str = "20261120",
    accession_number: str = "ACC1",
    study_description: str = "CT head",
    series_description: str = "Axial",
    **attributes: Any,
) -> Dataset:
    """One 16-bit CT slice: a bright disc on a dark field, different per instance number."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession_number
    ds.StudyID = "1"
    ds.StudyDescription = study_description
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = series_description
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [0, 0, float(instance_number)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    y, x = np.mgrid[0:size, 0:size]
    radius = size / 3 + instance_number % 5
    pixels = np.where((x - size / 2) ** 2 + (y - size / 2) ** 2 < radius**2, 1100, 0)
    ds.PixelData = pixels.astype(np.int16).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct_series(count: int, **common: Any) -> list[Dataset]:
    """`count` slices of one series of one study."""
    study_uid = common.pop("study_uid", None) or generate_uid()
    series_uid = common.pop("series_uid", None) or generate_uid()
    return [
        ct_dataset(study_uid=study_uid, series_uid=series_uid, instance_number=n + 1, **common)
        for n in range(count)
    ]


def register_node(
    organization: Organization, ae_title: str, *, host: str = "127.0.0.1", port: int = 0
) -> DicomNode:
    return DicomNode.objects.create(
        organization=organization, ae_title=ae_title, host=host, port=port
    )


def dicomweb_url(ds: Dataset, level: str = "instance") -> str:
    """The DICOMweb path of `ds`'s study, series or instance."""
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}"
    if level in ("series", "instance"):
        url += f"/series/{ds.SeriesInstanceUID}"
    if level == "instance":
        url += f"/instances/{ds.SOPInstanceUID}"
    return url
