"""The one way ringkv replaces a small file so that a crash leaves the old or the new content.

Identity, drain flag, replica registrations, the rebalance plan state and the local cluster's
files all follow the same dance: write a temporary file beside the target, fsync it, rename it
over the target, fsync the directory (without the last step the rename itself may be lost on
power failure). Having it once means a fix to the dance is made once.

Stdlib only, so every layer may use it; it does I/O, but nothing here decides anything.
"""

from __future__ import annotations

import json
import os
from typing import Any


def fsync_path(path: str, *, data_only: bool = False) -> None:
    """``fsync`` (``fdatasync`` with ``data_only``) the file or directory at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make a rename or creation inside directory ``path`` durable."""
    fsync_path(path)


def write_all(fd: int, data: bytes | bytearray) -> None:
    """``os.write`` until every byte of ``data`` is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(path: str, data: bytes, *, durable: bool, mode: int = 0o644) -> None:
    """Create or truncate ``path`` and write ``data``; ``durable`` fsyncs it before returning
    (the directory entry is the caller's: a rename follows, or ``fsync_dir``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new bytes, never a torn file.

    ``durable`` also fsyncs the file and its directory, so the new content survives a power
    failure once this returns. The temporary name carries the pid so concurrent writers in
    different processes never share one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    write_file(tmp, data, durable=durable, mode=mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_json_atomic(
    path: str, body: Any, *, durable: bool = True, indent: int | None = None
) -> None:
    """``write_atomic`` of ``body`` as UTF-8 JSON."""
    write_atomic(path, json.dumps(body, indent=indent).encode("utf-8"), durable=durable)
