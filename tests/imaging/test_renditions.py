"""Renditions: what the study list and the viewer show before anyone opens a study."""

from __future__ import annotations

import io
import os
import time
from typing import Any

import av
import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from PIL import Image

from accounts.models import Organization
from imaging.demo import ct_slices, ultrasound_cine
from imaging.dicom.render import NotRenderable
from imaging.models import Instance, ReceivedFile, Series
from imaging.services.ingest import ingest, receive_file
from imaging.services.renditions import _queued_key, render_series, rendered_frame
from tests.factories.imaging import ct_series, dicom_bytes

pytestmark = pytest.mark.django_db


def _receive_all(datasets: list, organization: Organization, capture: Any) -> None:
    with capture(execute=True):
        for ds in datasets:
            receive_file(
                content=dicom_bytes(ds),
                source=ReceivedFile.Source.UPLOAD,
                organization=organization,
            )


def _image(path: str) -> Image.Image:
    with default_storage.open(path, "rb") as stream:
        image = Image.open(io.BytesIO(stream.read()))
        image.load()
    return image


def _cached_frames(instance: Instance) -> list[str]:
    """The storage names of every file in the instance's rendered-frame cache."""
    folder = f"imaging/renditions/frames/{instance.sop_instance_uid}"
    (version,), _ = default_storage.listdir(folder)
    _, names = default_storage.listdir(f"{folder}/{version}")
    return [f"{folder}/{version}/{name}" for name in names]


def test_thumbnail_and_preview_are_made_after_ingest(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    _receive_all(ct_slices(count=5, size=256), clinic, django_capture_on_commit_callbacks)

    series = Series.objects.get()
    assert series.rendered_for == 5
    thumbnail, preview = _image(series.thumbnail), _image(series.preview)
    assert thumbnail.format == preview.format == "JPEG"
    assert max(thumbnail.size) == 128
    assert max(preview.size) == 256  # never enlarged beyond the image itself
    assert series.video == ""  # single-frame slices: no video


def test_older_renditions_are_replaced_not_piled_up(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    slices = ct_series(3, size=64)
    _receive_all(slices[:2], clinic, django_capture_on_commit_callbacks)
    first_thumbnail = Series.objects.get().thumbnail

    _receive_all(slices[2:], clinic, django_capture_on_commit_callbacks)

    series = Series.objects.get()
    assert series.rendered_for == 3
    assert series.thumbnail != first_thumbnail
    assert not default_storage.exists(first_thumbnail)
    assert default_storage.exists(series.thumbnail)


def test_cine_loop_becomes_an_h264_mp4_a_browser_plays(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    _receive_all([ultrasound_cine(frames=12, size=97)], clinic, django_capture_on_commit_callbacks)

    series = Series.objects.get()
    assert series.video.endswith(".mp4")
    with default_storage.open(series.video, "rb") as stream:
        content = stream.read()
    # +faststart: the index (moov) comes before the media, so playback starts at once.
    assert 0 < content.find(b"moov") < content.find(b"mdat")
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width % 2, stream.height % 2) == (0, 0)  # 97x97 made even
        assert sum(1 for _ in container.decode(video=0)) == 12


def test_render_series_is_a_no_op_when_nothing_changed(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    _receive_all(ct_series(2, size=64), clinic, django_capture_on_commit_callbacks)
    series = Series.objects.get()
    default_storage.delete(series.thumbnail)  # were it to render again, it would come back

    render_series(series_id=series.pk)

    assert Series.objects.get().thumbnail == series.thumbnail
    assert not default_storage.exists(series.thumbnail)


def test_batches_indexed_while_a_render_waits_queue_no_other(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    slices = ct_series(4, size=64)
    _receive_all(slices[:2], clinic, django_capture_on_commit_callbacks)
    series = Series.objects.get()
    assert series.rendered_for == 2
    # A render of the series is queued and has not started (the worker is busy): the next
    # batch leaves it to that run, which will see it.
    cache.set(_queued_key(series.pk), 1)
    _receive_all(slices[2:3], clinic, django_capture_on_commit_callbacks)
    assert Series.objects.get().rendered_for == 2

    # The queued run starts, and renders every instance indexed so far.
    render_series(series_id=series.pk)
    assert Series.objects.get().rendered_for == 3
    # Once it has started, the next batch queues a run of its own.
    _receive_all(slices[3:], clinic, django_capture_on_commit_callbacks)
    assert Series.objects.get().rendered_for == 4


def test_rendered_frame_is_cached_and_differs_per_window(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    _receive_all(ct_series(1, size=64), clinic, django_capture_on_commit_callbacks)
    instance = Instance.objects.get()

    brain = rendered_frame(instance=instance, window=(40, 80), viewport=(32, 32))
    again = rendered_frame(instance=instance, window=(40, 80), viewport=(32, 32))
    bone = rendered_frame(instance=instance, window=(300, 1500), viewport=(32, 32))

    assert brain == again
    assert brain != bone
    assert Image.open(io.BytesIO(brain)).size == (32, 32)
    assert len(_cached_frames(instance)) == 2


def test_a_frame_rendered_once_is_read_from_its_cached_file_after(
    clinic: Organization, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.FILE_UPLOAD_PERMISSIONS = 0o640
    _receive_all(ct_series(1, size=64), clinic, django_capture_on_commit_callbacks)
    instance = Instance.objects.get()
    rendered_frame(instance=instance, window=(40, 80))
    (name,) = _cached_frames(instance)
    path = default_storage.path(name)
    assert os.stat(path).st_mode & 0o777 == 0o640
    with open(path, "wb") as stream:  # what the cache holds is what is served
        stream.write(b"cached picture")

    assert rendered_frame(instance=instance, window=(40, 80)) == b"cached picture"
    assert rendered_frame(instance=instance, window=(40, 81)) != b"cached picture"


def test_a_frame_kept_for_later_is_served_at_once_and_cached_soon_after(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    _receive_all(ct_series(1, size=64), clinic, django_capture_on_commit_callbacks)
    instance = Instance.objects.get()
    made_now = rendered_frame(instance=instance, window=(40, 80), viewport=(32, 32))
    for name in _cached_frames(instance):
        default_storage.delete(name)

    later = rendered_frame(instance=instance, window=(40, 80), viewport=(32, 32), keep_later=True)

    assert later == made_now

    def kept() -> list[str]:  # not a file still being written (a dot name until renamed)
        return [name for name in _cached_frames(instance) if "/." not in name]

    deadline = time.monotonic() + 10
    while not kept() and time.monotonic() < deadline:
        time.sleep(0.01)
    (name,) = kept()
    with default_storage.open(name, "rb") as stream:
        assert stream.read() == made_now


def test_rendered_frame_numbers_start_at_one(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    _receive_all([ultrasound_cine(frames=4, size=32)], clinic, django_capture_on_commit_callbacks)
    instance = Instance.objects.get()

    last = rendered_frame(instance=instance, frame=4, media_type="image/png")

    assert Image.open(io.BytesIO(last)).format == "PNG"
    with pytest.raises(NotRenderable, match="frame 5 does not exist"):
        rendered_frame(instance=instance, frame=5)
    with pytest.raises(NotRenderable):
        rendered_frame(instance=instance, frame=0)


def test_demo_imaging_loads_once_for_the_demo_patient(
    clinic: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    from imaging.demo import DEMO_PATIENT_PIN, load_demo_imaging
    from tests.factories.ehr import PatientFactory

    patient = PatientFactory(organization=clinic, pin=DEMO_PATIENT_PIN)

    with django_capture_on_commit_callbacks(execute=True):
        sent = load_demo_imaging(organization=clinic)
    with django_capture_on_commit_callbacks(execute=True):
        sent_again = load_demo_imaging(organization=clinic)

    assert (sent, sent_again) == (41, 0)
    ct, ultrasound = Series.objects.order_by("modality")
    assert (ct.modality, ct.number_of_instances, ct.rendered_for) == ("CT", 40, 40)
    assert ultrasound.video.endswith(".mp4")
    assert {study.patient for study in patient.studies.all()} == {patient}
    assert patient.studies.count() == 2


@pytest.fixture
def tasks_through_the_broker(settings: Any) -> Any:
    # As in production: tasks go to a broker (here kombu's in-memory one, no worker), so a
    # throttled render's follow-up waits in the queue instead of running at once.
    from django.core.cache import cache

    from telemed.celery import app

    settings.IMAGING_RENDER_THROTTLE_SECONDS = 60
    app.conf.task_always_eager = False
    cache.clear()
    yield
    app.conf.task_always_eager = True
    cache.clear()


def test_a_series_is_rendered_at_most_once_per_throttle_window(
    clinic: Organization, django_capture_on_commit_callbacks: Any, tasks_through_the_broker: Any
) -> None:
    slices = ct_series(3, size=64)
    _receive_all(slices[:1], clinic, django_capture_on_commit_callbacks)  # ingest queued
    ingest(ReceivedFile.objects.get())  # what a worker would do
    series = Series.objects.get()

    render_series(series_id=series.pk)
    _receive_all(slices[1:], clinic, django_capture_on_commit_callbacks)
    for received in ReceivedFile.objects.filter(status=ReceivedFile.Status.RECEIVED):
        ingest(received)
    render_series(series_id=series.pk)

    series.refresh_from_db()
    assert series.number_of_instances == 3
    assert series.rendered_for == 1  # the second call fell in the window: left to the follow-up
