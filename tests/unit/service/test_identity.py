"""Node identity per volume: bootstrap vs lost volume, persistence, and what NodeService opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from kvnode.core.model import PartitionMap
from kvnode.service import identity
from kvnode.service.node import NodeService
from kvnode.settings import NodeSettings

from tests.unit.service.fakes import FakeGroups, three_nodes


def test_bootstrap_map_loses_nothing() -> None:
    assert identity.lost_partitions(1, [0, 1, 2]) == frozenset()


def test_later_map_listing_an_empty_volume_marks_its_partitions() -> None:
    assert identity.lost_partitions(2, [0, 2]) == frozenset({0, 2})
    assert identity.lost_partitions(7, []) == frozenset()  # a new node, not mapped yet


def test_identity_round_trip_and_reseeded(tmp_path: Path) -> None:
    assert identity.load(str(tmp_path)) is None
    ident = identity.new([1, 3])
    identity.save(str(tmp_path), ident)
    assert identity.load(str(tmp_path)) == ident
    assert ident.reseeded(1).needs_reseed == frozenset({3})
    assert ident.reseeded(1).incarnation == ident.incarnation
    assert identity.new().incarnation != ident.incarnation


def test_corrupt_identity_is_an_error(tmp_path: Path) -> None:
    (tmp_path / identity.FILE).write_text('{"incarnation": "x"}')
    with pytest.raises(KeyError, match="needs_reseed"):
        identity.load(str(tmp_path))


async def started(tmp_path: Path, pmap: PartitionMap) -> tuple[NodeService, FakeGroups]:
    groups = FakeGroups("n0")
    settings = NodeSettings(node_id="n0", data_dir=str(tmp_path))
    svc = NodeService(settings=settings, groups=groups, forwarder=None)  # type: ignore[arg-type]
    await svc.start()
    await svc.install_map(pmap)
    await svc.stop()
    return svc, groups


async def test_empty_volume_at_bootstrap_opens_every_replica(tmp_path: Path) -> None:
    svc, groups = await started(tmp_path, three_nodes(partitions=2, epoch=1))
    assert sorted(groups.opened) == [0, 1]
    assert svc.needs_reseed == frozenset()
    assert identity.load(str(tmp_path)) is not None


async def test_empty_volume_after_bootstrap_opens_nothing_and_says_so(tmp_path: Path) -> None:
    svc, groups = await started(tmp_path, three_nodes(partitions=2, epoch=4))
    assert groups.opened == {}
    assert svc.needs_reseed == frozenset({0, 1})
    ready, details = svc.readiness()
    assert not ready
    assert details["needs_reseed"] == [0, 1]
    assert "reseed" in details["reason"]
    # It stays refused across a restart (persisted), until a join reseeds a partition.
    again, groups2 = await started(tmp_path, three_nodes(partitions=2, epoch=5))
    assert groups2.opened == {}
    await again.reseeded(0)
    assert identity.load(str(tmp_path)).needs_reseed == frozenset({1})  # type: ignore[union-attr]


async def test_volume_from_before_incarnations_is_adopted(tmp_path: Path) -> None:
    from kvnode.service import mapstore

    mapstore.save(str(tmp_path / "map.json"), three_nodes(partitions=2, epoch=4))
    svc, groups = await started(tmp_path, three_nodes(partitions=2, epoch=4))
    assert sorted(groups.opened) == [0, 1]
    assert svc.needs_reseed == frozenset()


async def test_replica_seeded_before_a_crash_clears_its_mark(tmp_path: Path) -> None:
    """kill -9 after a join opened the fresh replica but before the mark was cleared: the
    replica registered on disk is the reseeded one, so the restart clears the mark."""
    await started(tmp_path, three_nodes(partitions=2, epoch=4))
    groups = FakeGroups("n0")
    groups.registered = lambda: {0: ("n0:9000", ["n1:9000"])}  # type: ignore[method-assign]
    settings = NodeSettings(node_id="n0", data_dir=str(tmp_path))
    svc = NodeService(settings=settings, groups=groups, forwarder=None)  # type: ignore[arg-type]
    await svc.start()
    await svc.stop()
    assert sorted(groups.opened) == [0]
    assert svc.needs_reseed == frozenset({1})
