"""Changing an instance's transfer syntax, and cutting one frame out of its pixel data.

Pure pydicom; the file as received is never changed: `transcode` returns a copy. Decoding uses
pydicom with pylibjpeg; encoding uses pydicom's encoders (RLE natively, JPEG 2000 through
pylibjpeg-openjpeg) and, for JPEG baseline, which pydicom cannot encode, Pillow.
"""

from __future__ import annotations

import copy
import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

# Syntaxes the pixel data can be written in without an encoder.
NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
ENCODED_BY_PYDICOM = {RLELossless, JPEG2000Lossless, JPEG2000}
JPEG_BASELINE_QUALITY = 90


class NotTranscodable(ValueError):
    """The instance cannot be given the requested transfer syntax; the message says why."""


def _stored_syntax(dataset: Dataset) -> UID:
    meta = getattr(dataset, "file_meta", None)
    value = getattr(meta, "TransferSyntaxUID", None)
    if not value:
        raise NotTranscodable("the dataset has no transfer syntax")
    return UID(value)


def _set_syntax(dataset: Dataset, syntax: UID) -> None:
    dataset.file_meta.TransferSyntaxUID = syntax
    # pydicom 3 derives the encoding from the meta when writing; keep the dataset consistent.
    dataset.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)


def _decompressed(dataset: Dataset) -> Dataset:
    """A native (explicit VR little endian) copy of `dataset`."""
    result = copy.deepcopy(dataset)
    if "PixelData" in result and _stored_syntax(result).is_compressed:
        try:
            # The same instance in another encoding keeps its UID (WADO-RS, C-MOVE).
            result.decompress(generate_instance_uid=False)
        except Exception as error:  # decoders raise many kinds on damaged data
            raise NotTranscodable(f"the pixel data cannot be decoded: {error}") from error
    elif not _stored_syntax(result).is_little_endian and "PixelData" in result:
        # Big endian (retired): pydicom's decoder swaps the bytes into native order.
        try:
            array = result.pixel_array
        except Exception as error:
            raise NotTranscodable(f"the pixel data cannot be decoded: {error}") from error
        result.PixelData = (
            np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        )
        result["PixelData"].VR = "OW" if int(result.BitsAllocated) > 8 else "OB"
    _set_syntax(result, ExplicitVRLittleEndian)
    return result


def _jpeg_baseline(dataset: Dataset) -> Dataset:
    """JPEG baseline (process 1) with Pillow: 8-bit grey or RGB only (PS3.5 A.4.1)."""
    if int(dataset.get("BitsAllocated") or 0) != 8 or int(dataset.get("BitsStored") or 0) != 8:
        raise NotTranscodable("JPEG baseline holds only 8-bit images")
    samples = int(dataset.get("SamplesPerPixel") or 1)
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if (samples, photometric) not in ((1, "MONOCHROME2"), (1, "MONOCHROME1"), (3, "RGB")):
        raise NotTranscodable(f"JPEG baseline cannot hold {photometric} with {samples} samples")
    frames = []
    array = dataset.pixel_array
    count = max(int(dataset.get("NumberOfFrames") or 1), 1)
    if count == 1:
        array = array[np.newaxis, ...]
    for pixels in array:
        image = Image.fromarray(pixels.astype(np.uint8), mode="L" if samples == 1 else "RGB")
        buffer = io.BytesIO()
        # subsampling 4:2:2, which is what YBR_FULL_422 says (PS3.5 8.2.1).
        image.save(buffer, "JPEG", quality=JPEG_BASELINE_QUALITY, subsampling=1)
        frames.append(buffer.getvalue())
    dataset.PixelData = encapsulate(frames)
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    if samples == 3:
        dataset.PhotometricInterpretation = "YBR_FULL_422"
        dataset.PlanarConfiguration = 0
    dataset.LossyImageCompression = "01"
    dataset.LossyImageCompressionMethod = "ISO_10918_1"
    _set_syntax(dataset, JPEGBaseline8Bit)
    return dataset


def transcode(dataset: Dataset, transfer_syntax_uid: str) -> Dataset:
    """A copy of `dataset` in `transfer_syntax_uid`.

    Decompressing to explicit/implicit VR little endian (or deflated) always works for pixel
    data pydicom can decode; compressing works to RLE lossless, JPEG 2000 (lossless and lossy)
    and JPEG baseline for 8-bit images. Anything else raises `NotTranscodable`.
    """
    target = UID(transfer_syntax_uid)
    if not target.is_valid or not target.is_transfer_syntax:
        raise NotTranscodable(f"{transfer_syntax_uid} is not a transfer syntax")
    stored = _stored_syntax(dataset)
    if target == stored:
        return copy.deepcopy(dataset)
    if "PixelData" not in dataset:
        # No pixel data: only the encoding of the dataset itself changes.
        if target.is_compressed and target not in NATIVE:
            raise NotTranscodable("an instance without pixel data cannot be compressed")
        result = copy.deepcopy(dataset)
        _set_syntax(result, target)
        return result
    native = _decompressed(dataset)
    if target in NATIVE:
        _set_syntax(native, target)
        return native
    if target == JPEGBaseline8Bit:
        return _jpeg_baseline(native)
    if target not in ENCODED_BY_PYDICOM:
        raise NotTranscodable(f"no encoder for {target.name}")
    options: dict = {}
    if target == JPEG2000:
        options["j2k_cr"] = [10]  # lossy JPEG 2000 needs a target: 10:1 keeps diagnostic detail
    try:
        native.compress(target, encoding_plugin="", generate_instance_uid=False, **options)
    except Exception as error:  # encoders refuse unsupported bit depths and the like
        raise NotTranscodable(f"cannot encode as {target.name}: {error}") from error
    if target == JPEG2000:
        native.LossyImageCompression = "01"
        native.LossyImageCompressionMethod = "ISO_15444_1"
    return native


def _native_frame(dataset: Dataset, frame: int, count: int) -> bytes:
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    samples = int(dataset.get("SamplesPerPixel") or 1)
    bits = int(dataset.BitsAllocated)
    pixel_data = dataset.PixelData
    frame_bits = rows * columns * samples * bits
    start_bit = frame * frame_bits
    if start_bit % 8 == 0 and frame_bits % 8 == 0:
        return bytes(pixel_data[start_bit // 8 : (start_bit + frame_bits) // 8])
    # 1-bit frames need not start on a byte boundary (PS3.5 8.1.1): unpack and repack.
    unpacked = np.unpackbits(np.frombuffer(pixel_data, dtype=np.uint8), bitorder="little")
    return np.packbits(unpacked[start_bit : start_bit + frame_bits], bitorder="little").tobytes()


def frame_bytes(dataset: Dataset, frame: int, transfer_syntax_uid: str | None = None) -> bytes:
    """The bytes of one frame (0-based): native pixel bytes for uncompressed syntaxes, the
    frame's compressed bitstream for encapsulated ones. `transfer_syntax_uid` None = as stored."""
    if "PixelData" not in dataset:
        raise NotTranscodable("the instance has no pixel data")
    count = max(int(dataset.get("NumberOfFrames") or 1), 1)
    if not 0 <= frame < count:
        raise NotTranscodable(f"frame {frame + 1} does not exist: the instance has {count}")
    if transfer_syntax_uid and UID(transfer_syntax_uid) != _stored_syntax(dataset):
        dataset = transcode(dataset, transfer_syntax_uid)
    syntax = _stored_syntax(dataset)
    if syntax.is_encapsulated:
        extended = None
        if "ExtendedOffsetTable" in dataset:
            extended = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)
        try:
            return get_frame(
                dataset.PixelData, frame, number_of_frames=count, extended_offsets=extended
            )
        except Exception as error:
            raise NotTranscodable(f"cannot find frame {frame + 1}: {error}") from error
    if not syntax.is_little_endian:
        dataset = _decompressed(dataset)
    return _native_frame(dataset, frame, count)
