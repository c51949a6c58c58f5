"""Demo imaging: a small synthetic CT study (a head-like phantom) and an ultrasound-like cine
loop for the demo patient, sent through `receive_file` like any arrival.

Idempotent: the UIDs are derived from fixed seeds, and a study already indexed (or waiting to
be) is not sent again.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from django.db import transaction
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from accounts.models import Organization, User
from imaging.models import ReceivedFile, Study

DEMO_PATIENT_PIN = "11503198500123"
DEMO_PATIENT_NAME = "Mamytova^Asel"
CT_STUDY_UID = generate_uid(entropy_srcs=["telemed demo", "CT head study"])
CT_SERIES_UID = generate_uid(entropy_srcs=["telemed demo", "CT head series"])
US_STUDY_UID = generate_uid(entropy_srcs=["telemed demo", "US abdomen study"])
US_SERIES_UID = generate_uid(entropy_srcs=["telemed demo", "US abdomen series"])


def _uid(*seeds: str) -> str:
    return generate_uid(entropy_srcs=["telemed demo", *seeds])


def _base(sop_class: str, sop_uid: str, study_uid: str, series_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = DEMO_PATIENT_PIN
    ds.PatientName = DEMO_PATIENT_NAME
    ds.PatientBirthDate = "19850315"
    ds.PatientSex = "F"
    ds.ReferringPhysicianName = "Zhumabekov^Bakyt"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def phantom_slice(z: float, size: int = 256) -> np.ndarray:
    """Hounsfield units of one axial slice of a head-like phantom at height z in [-1, 1]: a
    skull ellipse (bone), brain inside, two ventricles and a small bright lesion."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    scale = max(np.sqrt(max(1 - z * z, 0.0)), 0.05)
    outer = (x / (0.9 * scale)) ** 2 + (y / (0.95 * scale)) ** 2
    inner = (x / (0.82 * scale)) ** 2 + (y / (0.87 * scale)) ** 2
    hu = np.full((size, size), -1000.0)
    hu[outer <= 1] = 1200.0  # bone
    hu[inner <= 1] = 35.0  # brain
    for cx in (-0.18, 0.18):  # ventricles (CSF)
        ventricle = ((x - cx * scale) / (0.1 * scale)) ** 2 + (y / (0.3 * scale)) ** 2
        hu[(ventricle <= 1) & (inner <= 1)] = 5.0
    lesion = (x - 0.4 * scale) ** 2 + (y + 0.3 * scale) ** 2 < (0.06 + 0.03 * (1 - abs(z))) ** 2
    hu[lesion & (inner <= 1)] = 70.0
    noise = np.random.default_rng(int((z + 1) * 1000)).normal(0, 4, (size, size))
    return hu + noise


def ct_slices(count: int = 40, size: int = 256, study_date: str = "20261118") -> list[Dataset]:
    """The demo CT: `count` axial slices of the phantom, 16-bit signed, rescale -1024."""
    slices = []
    for n in range(count):
        ds = _base(CTImageStorage, _uid("CT head", str(n)), CT_STUDY_UID, CT_SERIES_UID)
        ds.Modality = "CT"
        ds.StudyDate = ds.SeriesDate = study_date
        ds.AccessionNumber = "AB-2026-0042"
        ds.StudyDescription = "CT head without contrast"
        ds.SeriesDescription = "Axial 5 mm"
        ds.BodyPartExamined = "HEAD"
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [-120.0, -120.0, 5.0 * n]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [240 / size, 240 / size]
        ds.SliceThickness = 5
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 80
        z = -0.95 + 1.9 * n / max(count - 1, 1)
        stored = np.clip(phantom_slice(z, size) + 1024, -32768, 32767).astype(np.int16)
        ds.PixelData = stored.tobytes()
        slices.append(ds)
    return slices


def ultrasound_cine(frames: int = 24, size: int = 160, study_date: str = "20261119") -> Dataset:
    """An ultrasound-like cine loop: one multi-frame 8-bit grey instance, a pulsing dark
    structure in speckle, 20 frames per second."""
    sop_uid = _uid("US abdomen", "cine")
    ds = _base(UltrasoundMultiFrameImageStorage, sop_uid, US_STUDY_UID, US_SERIES_UID)
    ds.Modality = "US"
    ds.StudyDate = ds.SeriesDate = study_date
    ds.AccessionNumber = "AB-2026-0043"
    ds.StudyDescription = "US abdomen"
    ds.SeriesDescription = "Liver cine"
    ds.NumberOfFrames = frames
    ds.FrameTime = 50.0
    ds.CineRate = 20
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size]
    # A fan: the sector an abdominal probe sees.
    angle = np.arctan2(x - size / 2, y + size * 0.1)
    depth = np.hypot(x - size / 2, y + size * 0.1)
    fan = (np.abs(angle) < 0.6) & (depth < size * 1.05)
    video = np.zeros((frames, size, size), dtype=np.uint8)
    for n in range(frames):
        speckle = rng.gamma(2.0, 40.0, (size, size))
        radius = size * (0.12 + 0.04 * np.sin(2 * np.pi * n / frames))
        vessel = np.hypot(x - size * 0.55, y - size * 0.6) < radius
        image = np.where(fan, np.clip(speckle, 0, 255), 0)
        image[vessel & fan] *= 0.15
        video[n] = image.astype(np.uint8)
    ds.PixelData = video.tobytes()
    return ds


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _already_there(study_uid: str, first_file: bytes) -> bool:
    # Indexed already, or received and still waiting for its ingest (the bytes are the same
    # every time: fixed UIDs and seeded noise).
    return (
        Study.objects.filter(study_instance_uid=study_uid).exists()
        or ReceivedFile.objects.filter(sha256=hashlib.sha256(first_file).hexdigest()).exists()
    )


def load_demo_imaging(*, organization: Organization, received_by: User | None = None) -> int:
    """Send the demo CT and ultrasound studies for the demo patient through `receive_file`,
    unless they are already there. Returns how many files were sent."""
    from imaging.services.ingest import queue_ingest_of, receive_file

    sent: list[int] = []
    for study_uid, datasets in (
        (CT_STUDY_UID, ct_slices()),
        (US_STUDY_UID, [ultrasound_cine()]),
    ):
        files = [_encoded(ds) for ds in datasets]
        if _already_there(study_uid, files[0]):
            continue
        for ds, content in zip(datasets, files, strict=True):
            received = receive_file(
                content=content,
                source=ReceivedFile.Source.UPLOAD,
                organization=organization,
                received_by=received_by,
                original_name=f"demo-{ds.Modality}-{int(ds.InstanceNumber):03}.dcm",
                queue_ingest=False,
            )
            sent.append(received.pk)
    if sent:
        with transaction.atomic():
            queue_ingest_of(sent)
    return len(sent)
