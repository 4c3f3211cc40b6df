"""Node identity per volume (incarnation): an empty volume never rejoins a group as a voter.

A Raft voter that comes back with an empty log under its old address can vote a candidate
missing committed entries into leadership and so lose acknowledged writes. The data directory
therefore carries ``incarnation.json``: a random id created the first time the volume adopts a
map, and the partitions that volume must not open as an existing voter (``needs_reseed``).

How a node tells a fresh cluster bootstrap from a lost volume (decided once, when a volume with
no incarnation adopts its first map, ``lost_partitions``):
- a volume with no incarnation but a stored map or replicas on disk predates incarnations: it is
  adopted as is (upgrade path);
- an empty volume adopting an epoch-1 map is a bootstrap: every epoch-1 replica starts empty;
- an empty volume adopting a map of epoch > 1 that lists it as a replica of partitions: those
  replicas existed before with data this volume no longer has: they need a reseed. A node that
  is new to the cluster is never listed as a replica before it has been seeded (the executor
  announces it with no replicas, seeds, adds, and only then maps it), so it is not affected.
A partition needing a reseed is not opened: this node serves nothing of it (requests are routed
to its leader), reports it (``/readyz``, ``GET /v1/admin/partitions/{p}``, a metric) and waits for
the operator to remove its old voter and join a fresh replica through the seed path; the join
clears the mark. A cluster still at epoch 1 that loses a volume cannot tell it from a bootstrap
this way, so nothing stays there: ``ringkv local`` seals a bootstrap by installing the same
placement at epoch 2 once the cluster serves (``LocalCluster.seal_bootstrap``), and the operator
never installs a map on a bootstrapped member that answers without one.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

from kvnode.core import files

log = logging.getLogger(__name__)
FILE = "incarnation.json"


@dataclass(frozen=True, slots=True)
class Identity:
    incarnation: str
    needs_reseed: frozenset[int] = frozenset()

    def reseeded(self, partition: int) -> Identity:
        return replace(self, needs_reseed=self.needs_reseed - {partition})


def new(needs_reseed: Iterable[int] = ()) -> Identity:
    return Identity(uuid.uuid4().hex, frozenset(needs_reseed))


def lost_partitions(epoch: int, mine: Iterable[int]) -> frozenset[int]:
    """Partitions an empty volume adopting a map of ``epoch`` (listing it for ``mine``) must not
    open as a voter: none at a bootstrap (epoch 1), every listed one after."""
    return frozenset() if epoch <= 1 else frozenset(mine)


def load(data_dir: str) -> Identity | None:
    """The volume's identity, or None for a volume that has none. A corrupt file is an error."""
    try:
        with open(os.path.join(data_dir, FILE), encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return None
    return Identity(str(raw["incarnation"]), frozenset(int(p) for p in raw["needs_reseed"]))


def save(data_dir: str, ident: Identity) -> None:
    """Atomic and fsynced: written before the map it guards, so a crash in between leaves an
    identity without a map (harmless), never a map without one."""
    body = {"incarnation": ident.incarnation, "needs_reseed": sorted(ident.needs_reseed)}
    files.write_json_atomic(os.path.join(data_dir, FILE), body)
