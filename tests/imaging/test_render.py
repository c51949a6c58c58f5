from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from imaging.dicom.render import NotRenderable, render_frame
from imaging.dicom.transcode import NotTranscodable, frame_bytes, transcode
from tests.factories.imaging import ct_dataset, dicom_bytes


def bundled(name: str) -> Dataset:
    # download=False: never reach for pydicom's download-only files (STACK-NOTES).
    return dcmread(get_testdata_file(name, download=False))


def picture(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def reread(dataset: Dataset) -> Dataset:
    return dcmread(io.BytesIO(dicom_bytes(dataset)))


def test_window_changes_what_the_picture_shows() -> None:
    ct = ct_dataset(size=64)  # a disc of +76 HU on -1024 HU air

    soft_tissue = np.asarray(picture(render_frame(ct, window=(40, 400), media_type="image/png")))
    bone = np.asarray(picture(render_frame(ct, window=(1000, 200), media_type="image/png")))

    assert 140 < soft_tissue[32, 32] < 160  # +76 HU: a bit above mid-grey at 40/400
    assert soft_tissue[0, 0] == 0  # air is black
    assert bone[32, 32] == 0  # at a bone window the disc is below the window: black


def test_default_window_is_the_datasets_own() -> None:
    ct = ct_dataset(size=64)

    assert render_frame(ct, media_type="image/png") == render_frame(
        ct, window=(40, 400), media_type="image/png"
    )


def test_monochrome1_is_shown_inverted() -> None:
    monochrome2 = ct_dataset(size=64)
    monochrome1 = ct_dataset(size=64, PhotometricInterpretation="MONOCHROME1")

    normal = np.asarray(picture(render_frame(monochrome2, media_type="image/png")))
    inverted = np.asarray(picture(render_frame(monochrome1, media_type="image/png")))

    assert np.array_equal(inverted, 255 - normal)


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # JPEG baseline, YBR_FULL_422
        "SC_rgb_rle.dcm",  # RLE
        "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
        "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS
        "SC_ybr_full_422_uncompressed.dcm",
    ],
)
def test_colour_images_of_every_compression_render_in_colour(name: str) -> None:
    dataset = bundled(name)

    image = picture(render_frame(dataset, max_size=(64, 64)))

    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert max(image.size) <= 64
    # These test images are bands of pure red, green, blue...: some pixel is clearly red.
    pixels = np.asarray(image).astype(int)
    assert ((pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)).any()


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",
        "MR_small_bigendian.dcm",
        "examples_palette.dcm",
    ],
)
def test_grey_and_palette_images_of_every_encoding_render(name: str) -> None:
    image = picture(render_frame(bundled(name), media_type="image/png"))

    assert image.format == "PNG"
    assert np.asarray(image).std() > 5  # not a blank picture


def test_a_frame_of_a_multi_frame_image_is_that_frame() -> None:
    dataset = bundled("SC_rgb_rle_2frame.dcm")  # frame 2 is frame 1 inverted

    first = np.asarray(picture(render_frame(dataset, 0, media_type="image/png"))).astype(int)
    second = np.asarray(picture(render_frame(dataset, 1, media_type="image/png"))).astype(int)

    assert np.abs(first + second - 255).max() <= 1
    with pytest.raises(NotRenderable, match="frame 3 does not exist"):
        render_frame(dataset, 2)


def test_an_instance_without_pixels_is_refused_with_a_reason() -> None:
    dataset = ct_dataset()
    del dataset.PixelData

    with pytest.raises(NotRenderable, match="no pixel data"):
        render_frame(dataset)


def test_jpeg2000_transcoded_to_explicit_little_endian_keeps_every_pixel() -> None:
    original = bundled("MR_small_jp2klossless.dcm")

    native = reread(transcode(original, ExplicitVRLittleEndian))

    assert native.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(native.pixel_array, original.pixel_array)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, ImplicitVRLittleEndian])
def test_lossless_compression_round_trips(syntax: str) -> None:
    original = ct_dataset(size=64)

    compressed = reread(transcode(original, syntax))

    assert compressed.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(compressed.pixel_array, original.pixel_array)


def test_jpeg_baseline_is_made_for_8_bit_colour_and_refused_for_16_bit() -> None:
    colour = bundled("SC_rgb_rle.dcm")

    lossy = reread(transcode(colour, JPEGBaseline8Bit))

    assert lossy.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert lossy.LossyImageCompression == "01"
    assert np.abs(lossy.pixel_array.astype(int) - colour.pixel_array.astype(int)).mean() < 8
    with pytest.raises(NotTranscodable, match="8-bit"):
        transcode(ct_dataset(), JPEGBaseline8Bit)


def test_transcoding_leaves_the_original_untouched() -> None:
    original = bundled("MR_small_jp2klossless.dcm")
    before = bytes(original.PixelData)

    transcode(original, ExplicitVRLittleEndian)

    assert bytes(original.PixelData) == before
    assert original.file_meta.TransferSyntaxUID == JPEG2000Lossless


def test_frame_bytes_of_native_and_encapsulated_data() -> None:
    native = bundled("SC_rgb_rle_2frame.dcm")
    native_copy = transcode(native, ExplicitVRLittleEndian)

    second_native = frame_bytes(native_copy, 1)
    second_rle = frame_bytes(native, 1)

    assert second_native == native_copy.pixel_array[1].tobytes()
    assert second_rle[:4] == b"\x03\x00\x00\x00"  # an RLE header: three segments (R, G, B)
    assert frame_bytes(native, 1, ExplicitVRLittleEndian) == second_native
    with pytest.raises(NotTranscodable, match="does not exist"):
        frame_bytes(native, 2)
