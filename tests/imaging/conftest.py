from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _files_in_tmp(settings: Any, tmp_path: Path) -> None:
    # Received files, renditions and unfinished uploads of one test never meet another's.
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMAGING_UPLOAD_DIR = tmp_path / "uploads"
