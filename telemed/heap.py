"""Long-running processes take what they made while starting out of garbage collection."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Django, pydicom, numpy, aiortc and the rest make several hundred thousand objects while
    a process starts, and they live as long as it does. A full collection walks all of them
    every time: ~100 ms holding the GIL in a DICOM server or worker process (measured), which
    stalls every thread — pynetdicom's server also collects in full every 30 s. Frozen, later
    collections walk only what was made since (and forked children share those pages)."""
    gc.collect()
    gc.freeze()
