"""Renditions of a series (thumbnail, preview at the default window, MP4 for cine) and
rendered frames for the viewer and WADO-RS, all kept in the default storage.

Only Django's storage API is used (never filesystem paths), so S3 works the same.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage, storages

from imaging.dicom.render import NotRenderable, number_of_frames, render_frame
from imaging.dicom.video import dataset_video
from imaging.models import Instance, Series
from imaging.services.files import is_plain_filesystem, load_dataset, replace_file

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (128, 128)
PREVIEW_SIZE = (512, 512)
# The viewer's frames: JPEG quality low enough for a 300 kbit/s link, high enough to read.
DEFAULT_QUALITY = 80
RENDITIONS = "imaging/renditions"


def _throttle_seconds() -> int:
    return int(getattr(settings, "IMAGING_RENDER_THROTTLE_SECONDS", 5))


def _save(path: str, content: bytes) -> str:
    """Write `content` at `path` (replacing what was there) and return the stored name."""
    if default_storage.exists(path):
        default_storage.delete(path)
    return default_storage.save(path, ContentFile(content))


def _replace(old: str, new: str) -> None:
    if old and old != new and default_storage.exists(old):
        default_storage.delete(old)


def _frames_are_cine(instance: Instance) -> bool:
    return instance.number_of_frames > 1 and instance.has_pixels


def _make_renditions(series: Series, count: int) -> None:
    # Not the instances' metadata: decoding a whole series' JSON on every run was a tenth of
    # the worker's time during a large ingest.
    instances = list(series.instances.defer("metadata").order_by("instance_number", "id"))
    images = [instance for instance in instances if instance.has_pixels]
    base = f"{RENDITIONS}/series/{series.series_instance_uid}"
    updates: dict[str, str] = {}
    if images:
        middle = images[len(images) // 2]
        try:
            dataset = load_dataset(middle)
            frame = number_of_frames(dataset) // 2
            thumbnail = render_frame(dataset, frame, max_size=THUMBNAIL_SIZE, quality=75)
            preview = render_frame(dataset, frame, max_size=PREVIEW_SIZE, quality=85)
        except NotRenderable as error:
            logger.info("series %s: no thumbnail (%s)", series.pk, error)
        else:
            updates["thumbnail"] = _save(f"{base}/thumbnail-{count}.jpg", thumbnail)
            updates["preview"] = _save(f"{base}/preview-{count}.jpg", preview)
    cine = [instance for instance in images if _frames_are_cine(instance)]
    if cine:
        longest = max(cine, key=lambda instance: instance.number_of_frames)
        path = f"{base}/{longest.sop_instance_uid}.mp4"
        if series.video != path or not default_storage.exists(path):
            try:
                updates["video"] = _save(path, dataset_video(load_dataset(longest)))
            except (NotRenderable, ValueError) as error:
                logger.info("series %s: no video (%s)", series.pk, error)
    for field, new in updates.items():
        _replace(getattr(series, field), new)
        setattr(series, field, new)
    series.rendered_for = count
    series.save(update_fields=[*updates, "rendered_for"])


# While a run is queued and has not started, indexing more of the series queues none: that run
# will see them (they are committed before it starts). A flag lost with its task (a broker
# restart) lapses after this long.
QUEUED_FLAG_SECONDS = 60


def _queued_key(series_id: int) -> str:
    return f"imaging:render-waiting:{series_id}"


def queue_render(series_id: int) -> None:
    """Queue render_series for a series that gained instances (see QUEUED_FLAG_SECONDS): a
    C-STORE of thousands of instances is indexed in batches, and a task per batch cost the
    worker more than the renditions."""
    from imaging.tasks import render_series as render_series_task

    if cache.add(_queued_key(series_id), 1, timeout=QUEUED_FLAG_SECONDS):
        render_series_task.delay(series_id)


def render_series(*, series_id: int) -> None:
    """Make the series' thumbnail, preview and (for cine) video if instances arrived since.

    Called after every ingested instance, so it is cheap when nothing changed and renders at
    most once per few seconds per series; a call inside that window schedules one more run
    for its end, so the last instance of a series is always rendered.
    """
    from imaging.tasks import render_series as render_series_task

    cache.delete(_queued_key(series_id))  # before reading the count: later batches queue anew
    series = Series.objects.filter(pk=series_id).first()
    if series is None:
        return
    count = series.number_of_instances
    if series.rendered_for == count and (series.thumbnail or not count):
        return
    # Tasks run in-process (no broker): a delayed follow-up would run at once, so no throttle.
    throttle = 0 if render_series_task.app.conf.task_always_eager else _throttle_seconds()
    if throttle > 0 and not cache.add(f"imaging:rendered:{series_id}", 1, timeout=throttle):
        # Rendered a moment ago: one follow-up run after the window covers what arrives now.
        if cache.add(f"imaging:render-queued:{series_id}", 1, timeout=throttle):
            render_series_task.apply_async((series_id,), countdown=throttle + 1)
        return
    cache.delete(f"imaging:render-queued:{series_id}")
    _make_renditions(series, count)


def _frame_key(
    instance: Instance,
    frame: int,
    window: tuple[float, float] | None,
    viewport: tuple[int, int] | None,
    media_type: str,
    quality: int,
    progressive: bool,
) -> str:
    # 17 significant digits: two different windows never share a picture.
    window_part = f"{window[0]:.17g}_{window[1]:.17g}" if window else "default"
    viewport_part = f"{viewport[0]}x{viewport[1]}" if viewport else "full"
    extension = "png" if media_type == "image/png" else "jpg"
    if extension == "jpg" and not progressive:
        extension = "baseline.jpg"
    # The received file's hash: a changed file (never, but cheap to guard) gets new frames.
    version = hashlib.sha256(instance.received_file.sha256.encode()).hexdigest()[:8]
    return (
        f"{RENDITIONS}/frames/{instance.sop_instance_uid}/{version}/"
        f"{frame}-{window_part}-{viewport_part}-q{quality}.{extension}"
    )


def rendered_frame(
    *,
    instance: Instance,
    frame: int = 1,
    window: tuple[float, float] | None = None,
    viewport: tuple[int, int] | None = None,
    media_type: str = "image/jpeg",
    quality: int | None = None,
    progressive: bool = True,
    keep_later: bool = False,
) -> bytes:
    """One frame (1-based, as in WADO-RS) of `instance` as JPEG or PNG, shrunk to fit
    `viewport` (width, height); a JPEG is progressive unless asked otherwise. Cached in the
    default storage; raises `NotRenderable`.

    With `keep_later` the new frame is written to the cache by a background thread after it is
    returned: a viewer waiting for it does not wait for the file (new directories, a write and
    a rename: about a quarter of a first request's time in the web process)."""
    if not 1 <= frame <= instance.number_of_frames:
        raise NotRenderable(
            f"frame {frame} does not exist: the instance has {instance.number_of_frames}"
        )
    if media_type not in ("image/jpeg", "image/png"):
        raise NotRenderable(f"cannot render as {media_type}; use image/jpeg or image/png")
    if viewport is not None:
        viewport = (min(max(int(viewport[0]), 16), 4096), min(max(int(viewport[1]), 16), 4096))
    quality = min(max(int(quality or DEFAULT_QUALITY), 1), 95)
    key = _frame_key(instance, frame, window, viewport, media_type, quality, progressive)
    cached = _cached(key)
    if cached is not None:
        return cached
    content = render_frame(
        load_dataset(instance),
        frame - 1,
        window=window,
        max_size=viewport,
        media_type=media_type,
        quality=quality,
        progressive=progressive,
    )
    if keep_later:
        _cache_writer().submit(_keep_or_log, storages["default"], key, content)
    else:
        _keep(storages["default"], key, content)
    return content


def _keep(storage: Storage, key: str, content: bytes) -> None:
    if is_plain_filesystem(storage):
        # Whole or not at all: a request reading it meanwhile finds no file or all of it.
        replace_file(storage=storage, name=key, content=content)  # type: ignore[arg-type]
    elif not storage.exists(key):  # another request may have made it meanwhile
        storage.save(key, ContentFile(content))


@functools.cache
def _cache_writer() -> ThreadPoolExecutor:
    """One thread per process writes frames kept for later, in the order they were made."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-cache")


def _keep_or_log(storage: Storage, key: str, content: bytes) -> None:
    try:
        _keep(storage, key, content)
    except Exception:  # a full disk, say: the frame was served; the next request renders it
        logger.exception("rendered frame %s could not be cached", key)


def _cached(key: str) -> bytes | None:
    """The frame rendered earlier under `key`, or None. On the local filesystem a viewer's
    burst of frames pays one open for each, not the storage API's existence check first."""
    if is_plain_filesystem(default_storage):
        try:
            with open(default_storage.path(key), "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return None
    if not default_storage.exists(key):
        return None
    with default_storage.open(key, "rb") as stream:
        return stream.read()
