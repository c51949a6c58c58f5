"""Reading the stored file of an indexed instance."""

from __future__ import annotations

from pydicom.dataset import FileDataset

from imaging.dicom.parse import read_dataset
from imaging.models import Instance


def instance_bytes(instance: Instance) -> bytes:
    """The instance's file exactly as it was received."""
    with instance.received_file.file.open("rb") as stream:
        return stream.read()


def load_dataset(instance: Instance, *, stop_before_pixels: bool = False) -> FileDataset:
    """The instance's dataset, parsed from its stored file."""
    with instance.received_file.file.open("rb") as stream:
        return read_dataset(stream, stop_before_pixels=stop_before_pixels)
