"""Persistence of the node's partition map (JSON, written atomically and fsynced)."""

from __future__ import annotations

import json
import logging
import os

from kvnode.core.model import PartitionMap

log = logging.getLogger(__name__)


def load(path: str) -> PartitionMap | None:
    """The map stored at ``path``, or None if there is none. A corrupt file is an error."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return None
    return PartitionMap.from_dict(raw)


def save(path: str, pmap: PartitionMap) -> None:
    """Write ``pmap`` so that a crash leaves either the old or the new map, never a torn one."""
    tmp = path + ".tmp"
    data = json.dumps(pmap.to_dict(), indent=1, sort_keys=True).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    log.info("partition map epoch %d saved", pmap.epoch)
