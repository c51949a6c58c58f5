"""Stored files: keeping a new one, reading the file of an indexed instance."""

from __future__ import annotations

import contextlib
import errno
import os
from typing import IO

from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage
from django.utils._os import safe_makedirs
from pydicom.dataset import FileDataset

from imaging.dicom.parse import read_dataset
from imaging.models import Instance

WRITE_CHUNK = 1 << 20
# Errors of a filesystem that has no hard links (some network and FAT mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def instance_bytes(instance: Instance) -> bytes:
    """The instance's file exactly as it was received."""
    with instance.received_file.file.open("rb") as stream:
        return stream.read()


def load_dataset(instance: Instance, *, stop_before_pixels: bool = False) -> FileDataset:
    """The instance's dataset, parsed from its stored file."""
    with instance.received_file.file.open("rb") as stream:
        return read_dataset(stream, stop_before_pixels=stop_before_pixels)


def is_plain_filesystem(storage: Storage) -> bool:
    """Whether `storage` is Django's own FileSystemStorage (not a subclass, which may change how
    files are saved), so `keep_new_file` may write the file itself."""
    # `__class__` and not `type()`: the default storage is a lazy proxy. A storage that
    # overwrites keeps one file per name, which a new file must not change.
    overwrites = getattr(storage, "_allow_overwrite", False)
    return storage.__class__ is FileSystemStorage and not overwrites


def keep_new_file(*, storage: FileSystemStorage, name: str, content: bytes | IO[bytes]) -> str:
    """Write `content` as a new file `name` under the storage's location and return the name it
    got: `name`, or when that is taken the storage's alternative (`name_XXXXXXX`), as
    `Storage.save` does. `name` must be a valid relative name ("dir/.../file").

    Every C-STORE waits for this. `Storage.save` spends most of its time in Python (name
    checks, an existence check, a lock, chunked writes through a file object, a stat per
    step); this does what it does for a new file in a few system calls, and more: the content
    goes to a temporary name in the same directory, and only the complete file (with its mode
    and group) is linked under its name, so an error or a crash midway never leaves part of a
    file under a name a row may point to.
    Like `Storage.save`, no fsync: the file is in the kernel before the row that names it is
    written, which a crash of the process does not lose.
    """
    directory, _, base = name.rpartition("/")
    folder = os.path.join(storage.location, directory)
    temporary = _written_temporary(storage, folder, base, content)
    try:
        kept = base
        while True:
            try:
                os.link(temporary, os.path.join(folder, kept))  # fails if the name is taken
                break
            except FileExistsError:
                kept = storage.get_alternative_name(base, "")
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                stored = ContentFile(content) if isinstance(content, bytes) else File(content)
                return storage.save(name, stored)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return f"{directory}/{kept}" if directory else kept


def replace_file(*, storage: FileSystemStorage, name: str, content: bytes) -> None:
    """Write `content` as file `name` under the storage's location, replacing any file of that
    name at once and whole (a reader sees the old file or the new one, never part of one).
    For files anyone may remake, such as cached renditions."""
    directory, _, base = name.rpartition("/")
    folder = os.path.join(storage.location, directory)
    temporary = _written_temporary(storage, folder, base, content)
    try:
        os.replace(temporary, os.path.join(folder, base))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _written_temporary(
    storage: FileSystemStorage, folder: str, base: str, content: bytes | IO[bytes]
) -> str:
    """A new temporary file in `folder` holding `content`, with the storage's mode and group."""
    temporary = os.path.join(folder, f".{base}.{os.urandom(6).hex()}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(temporary, flags, 0o666)
    except FileNotFoundError:  # the first file of its folder: make the folder
        _make_directory(storage, folder)
        fd = os.open(temporary, flags, 0o666)
    try:
        try:
            _write_all(fd, content)
            if storage.file_permissions_mode is not None:
                os.fchmod(fd, storage.file_permissions_mode)
            _take_group_of_location(fd, storage.location)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return temporary


def _make_directory(storage: FileSystemStorage, folder: str) -> None:
    # As FileSystemStorage makes them: FILE_UPLOAD_DIRECTORY_PERMISSIONS on every new level.
    if storage.directory_permissions_mode is not None:
        safe_makedirs(folder, storage.directory_permissions_mode, exist_ok=True)
    else:
        os.makedirs(folder, exist_ok=True)


def _write_all(fd: int, content: bytes | IO[bytes]) -> None:
    if isinstance(content, bytes):
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        return
    content.seek(0)
    while chunk := content.read(WRITE_CHUNK):
        _write_all(fd, chunk)
    content.seek(0)


def _take_group_of_location(fd: int, location: str) -> None:
    # As FileSystemStorage does: a new file belongs to the group of the storage's root.
    if os.name != "posix":
        return
    group = os.stat(location).st_gid
    if os.fstat(fd).st_gid != group:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, group)
