"""Writing a DICOM File-set (PS3.10 / PS3.12 media: a DICOMDIR and its files) as a ZIP.

`StudyZipWriter` takes the instances one at a time: each goes to pydicom's FileSet staging
area on disk as soon as it is added, so a study of many gigabytes is never held in memory.
`finish()` writes the File-set (file IDs of up to eight components of up to eight uppercase
letters and digits, as PS3.10 8.5 and PS3.12 require, chosen by pydicom: PT000000/ST000000/
SE000000/IM000000) and packs it into a ZIP with the DICOMDIR at the root, ready to be unpacked
onto a CD or a USB stick.

Knows nothing of HTTP or the database.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import IO

from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

FILE_SET_ID = "TELEMED"
# DICOM pixel data rarely compresses (and compressed syntaxes not at all): stored, not
# deflated, so packing costs no CPU; the DICOMDIR and the README are deflated.
COPY_CHUNK = 1 << 20

# Values the directory records must have (PS3.3 F.5: Type 1 in the PATIENT, STUDY, SERIES
# and IMAGE records) given to an exported copy that lacks them; an anonymized one always
# does, since the profile empties the study date, time and ID.
RECORD_PLACEHOLDERS = {
    "PatientID": "UNKNOWN",
    "StudyDate": "19000101",
    "StudyTime": "000000",
    "StudyID": "0",
    "Modality": "OT",
}


def _missing(dataset: Dataset, keyword: str) -> bool:
    return keyword not in dataset or dataset[keyword].VM == 0


class StudyZipWriter:
    """Collects instances into a File-set and packs it as a ZIP (use as a context manager,
    so the temporary files go away whatever happens)."""

    def __init__(self, *, readme: str = "") -> None:
        self._temp = tempfile.TemporaryDirectory(prefix="telemed-export-")
        self._file_set = FileSet()
        self._file_set.ID = FILE_SET_ID
        self._readme = readme
        self._series_numbers: dict[str, int] = {}
        self._instance_counts: dict[str, int] = {}
        self.count = 0

    def __enter__(self) -> StudyZipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._temp.cleanup()

    def add(self, dataset: Dataset) -> None:
        """Stage one instance (written to disk at once; the caller may drop `dataset`)."""
        self._fill_record_keys(dataset)
        self._file_set.add(dataset)
        self.count += 1

    def _fill_record_keys(self, dataset: Dataset) -> None:
        for keyword, value in RECORD_PLACEHOLDERS.items():
            if _missing(dataset, keyword):
                setattr(dataset, keyword, value)
        series_uid = str(dataset.get("SeriesInstanceUID", ""))
        if _missing(dataset, "SeriesNumber"):
            dataset.SeriesNumber = self._series_numbers.setdefault(
                series_uid, len(self._series_numbers) + 1
            )
        count = self._instance_counts[series_uid] = self._instance_counts.get(series_uid, 0) + 1
        if _missing(dataset, "InstanceNumber"):
            dataset.InstanceNumber = count

    def finish(self, destination: IO[bytes]) -> int:
        """Write the File-set and pack it into `destination` (a binary file); returns the
        number of instances."""
        root = Path(self._temp.name) / "fileset"
        self._file_set.write(root)
        with zipfile.ZipFile(destination, "w", allowZip64=True) as archive:
            archive.write(root / "DICOMDIR", "DICOMDIR", compress_type=zipfile.ZIP_DEFLATED)
            if self._readme:
                archive.writestr(
                    "README.TXT",
                    self._readme.replace("\n", "\r\n"),
                    compress_type=zipfile.ZIP_DEFLATED,
                )
            for path in sorted(root.rglob("*")):
                if path.is_dir() or path.name == "DICOMDIR":
                    continue
                name = path.relative_to(root).as_posix()
                archive.write(path, name, compress_type=zipfile.ZIP_STORED)
                # Free the disk as we go: a big study would otherwise take three copies.
                os.unlink(path)
        return self.count
