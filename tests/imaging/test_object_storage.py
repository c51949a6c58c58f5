"""Files go through Django's storage API only, so object storage (S3) can replace the disk.

The whole path — receive, index, thumbnails, a rendered frame, an anonymized export and its
download — runs here with Django's in-memory storage as the default storage: any code that
reached for a filesystem path instead of the storage API would fail.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from accounts.models import Organization, User
from imaging.models import ReceivedFile, Series, StudyExport
from imaging.services.exports import request_export
from imaging.services.ingest import receive_file
from imaging.services.renditions import rendered_frame
from tests.conftest import logged_in_client
from tests.factories.imaging import ct_series, dicom_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def object_storage(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }


def test_study_is_kept_rendered_and_exported_through_the_storage_api(
    object_storage: None,
    clinic: Organization,
    clinician: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for ds in ct_series(3):
            receive_file(
                content=dicom_bytes(ds),
                source=ReceivedFile.Source.UPLOAD,
                organization=clinic,
                received_by=clinician,
            )
    series = Series.objects.get()
    instance = series.instances.first()

    with django_capture_on_commit_callbacks(execute=True):
        export = request_export(study=series.study, user=clinician, anonymized=True)
    export.refresh_from_db()
    frame = rendered_frame(instance=instance, frame=1)
    download = logged_in_client(clinician).get(f"/imaging/exports/{export.pk}/download/")

    assert set(ReceivedFile.objects.values_list("status", flat=True)) == {"ingested"}
    assert series.thumbnail
    assert default_storage.exists(series.thumbnail)
    assert frame[:3] == b"\xff\xd8\xff"
    assert export.status == StudyExport.Status.READY
    assert default_storage.exists(export.file)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert "DICOMDIR" in archive.namelist()
    assert not Path(settings.MEDIA_ROOT).exists()  # nothing went to the disk
