"""Photos and scans that are not DICOM, wrapped as DICOM Secondary Capture (PS3.3 A.8.1).

A JPEG is kept as it is, encapsulated as JPEG Baseline (PS3.5 A.4.1), when it is baseline
8-bit and needs no rotation; otherwise (progressive JPEG, EXIF rotation) it is decoded and
encoded again as baseline JPEG. A PNG is stored uncompressed (explicit VR little endian):
RGB or MONOCHROME2, 8 or 16 bits. Knows nothing of HTTP or the database: the caller passes
the patient module as plain values.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Pillow refuses bigger images as possible decompression bombs; so do we.
MAX_PIXELS = 100_000_000


class NotWrappable(ValueError):
    """The bytes are not a JPEG or PNG image we can wrap; the message says why."""


@dataclass(frozen=True)
class PatientModule:
    """The DICOM patient module (PS3.3 C.7.1.1) of the patient the image belongs to."""

    patient_id: str
    patient_name: str
    birth_date: dt.date | None = None
    sex: str = ""  # "F", "M", "O" or ""


@dataclass(frozen=True)
class WrapTarget:
    """Where the wrapped image goes: its study, series and its own UID."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    instance_number: int = 1
    study_description: str = "Photos and scans"
    series_description: str = "Uploaded photos"


def image_kind(head: bytes) -> str | None:
    """ "image/jpeg" or "image/png" from the first bytes (never the name), else None."""
    if head.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if head.startswith(PNG_MAGIC):
        return "image/png"
    return None


def _is_baseline_jpeg(content: bytes) -> bool:
    """Does the JPEG use a baseline frame (SOF0, 8-bit)? Walks the markers up to the frame."""
    position = 2
    while position + 4 <= len(content):
        if content[position] != 0xFF:
            return False
        marker = content[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(content[position + 2 : position + 4], "big")
        if marker == 0xC0:
            return content[position + 4] == 8
        if 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return False  # extended, progressive, lossless or arithmetic: not baseline
        if marker == 0xDA:
            return False
        position += 2 + length
    return False


def _open(content: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(content))
        if image.width * image.height > MAX_PIXELS:
            raise NotWrappable(f"the image is too large ({image.width}x{image.height} pixels)")
        return image
    except NotWrappable:
        raise
    except Exception as error:  # Pillow raises many kinds on a damaged image
        raise NotWrappable(f"the image cannot be read: {error}") from error


def _base_dataset(patient: PatientModule, target: WrapTarget, transfer_syntax: str) -> Dataset:
    now = dt.datetime.now(tz=dt.UTC)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = target.sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: a Cyrillic name when no Latin one is known
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = target.sop_instance_uid
    ds.StudyInstanceUID = target.study_uid
    ds.SeriesInstanceUID = target.series_uid
    ds.PatientID = patient.patient_id
    ds.PatientName = patient.patient_name
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    ds.PatientSex = patient.sex
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.StudyID = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = target.study_description[:64]
    ds.SeriesDescription = target.series_description[:64]
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = target.instance_number
    ds.ConversionType = "DI"  # digitized image (a photo or a scan of film or paper)
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"  # a photo of a document may show names: treat it so
    return ds


def _set_pixels(ds: Dataset, image: Image.Image, *, samples: int, bits: int) -> None:
    ds.Rows, ds.Columns = image.height, image.width
    ds.SamplesPerPixel = samples
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0


def _jpeg_dataset(content: bytes, patient: PatientModule, target: WrapTarget) -> Dataset:
    image = _open(content)
    orientation = image.getexif().get(0x0112, 1)
    if image.mode not in ("L", "RGB") or orientation != 1 or not _is_baseline_jpeg(content):
        # Not storable as it is: rotate upright (a phone's EXIF) and encode as baseline again.
        upright = ImageOps.exif_transpose(image.convert("RGB" if image.mode != "L" else "L"))
        buffer = io.BytesIO()
        upright.save(buffer, format="JPEG", quality=92)
        content, image = buffer.getvalue(), upright
    ds = _base_dataset(patient, target, JPEGBaseline8Bit)
    is_colour = image.mode == "RGB"
    _set_pixels(ds, image, samples=3 if is_colour else 1, bits=8)
    # PS3.5 8.2.1: colour JPEG baseline is YBR_FULL_422 as stored by JFIF encoders.
    ds.PhotometricInterpretation = "YBR_FULL_422" if is_colour else "MONOCHROME2"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([content])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    return ds


def _png_dataset(content: bytes, patient: PatientModule, target: WrapTarget) -> Dataset:
    image = _open(content)
    try:
        image.load()
    except Exception as error:
        raise NotWrappable(f"the image cannot be read: {error}") from error
    ds = _base_dataset(patient, target, ExplicitVRLittleEndian)
    if image.mode in ("I;16", "I;16B", "I"):
        pixels = image.convert("I;16") if image.mode != "I;16" else image
        _set_pixels(ds, image, samples=1, bits=16)
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels.tobytes()
    elif image.mode in ("1", "L", "LA"):
        gray = image.convert("L")
        _set_pixels(ds, gray, samples=1, bits=8)
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = gray.tobytes()
    else:
        rgb = image.convert("RGB")
        _set_pixels(ds, rgb, samples=3, bits=8)
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = rgb.tobytes()
    if len(ds.PixelData) % 2:
        ds.PixelData += b"\0"  # PS3.5 8.1.1: pixel data has an even length
    return ds


def wrap_image(content: bytes, *, patient: PatientModule, target: WrapTarget) -> bytes:
    """A DICOM Part 10 Secondary Capture file holding the JPEG or PNG image `content`."""
    kind = image_kind(content[:8])
    if kind == "image/jpeg":
        ds = _jpeg_dataset(content, patient, target)
    elif kind == "image/png":
        ds = _png_dataset(content, patient, target)
    else:
        raise NotWrappable("not a JPEG or PNG image")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
