"""A rolling upgrade from a release without group commit: a leader never sends a grouped entry
to a replica that has not confirmed it decodes them (it would skip the entry and diverge).

Three in-process groups over real sockets and LevelDB; one follower answers the feature
handshake as the previous release does (not at all) until it is "upgraded".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kvnode.raft import commands

from tests.integration.raft_trio import CountingProcessor, Trio, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class GroupCounting(CountingProcessor):
    """Counts the grouped entries this replica applied."""

    def __init__(self) -> None:
        super().__init__()
        self.groups = 0

    def apply(self, store: Any, cmd: commands.Command, index: int) -> Any:
        result = super().apply(store, cmd, index)
        if isinstance(cmd, commands.GroupCmd) and not result.skipped:
            self.groups += 1
        return result


@pytest.fixture
async def trio(tmp_path) -> AsyncIterator[Trio]:
    t = Trio(str(tmp_path), partitions=1)
    t.procs = [GroupCounting() for _ in range(3)]
    try:
        for i in range(3):
            await t.start(i)
        yield t
    finally:
        await t.stop_all()


def _groups(trio: Trio) -> list[int]:
    return [p.groups for p in trio.procs]  # type: ignore[attr-defined]


async def test_no_grouped_entry_until_every_replica_decodes_them(trio: Trio) -> None:
    leader = await trio.leader(0)
    old = (leader + 1) % 3
    # The previous release: no answer to the handshake, and never groups when it leads.
    trio.replica(old, 0).features = lambda: ()  # type: ignore[method-assign]
    trio.gm(old).group_commit._allowed = lambda _p: False
    await trio.put_many(0, 300, prefix="mixed/")
    await trio.converged(0, [0, 1, 2])
    assert _groups(trio) == [0, 0, 0]

    del trio.replica(old, 0).features  # the node now runs the new release
    trio.gm(old).group_commit._allowed = trio.gm(old)._may_group
    rounds = iter(range(1000))

    async def grouping() -> bool:
        await trio.put_many(0, 200, prefix=f"new/{next(rounds)}/")
        return sum(_groups(trio)) > 0

    await until(grouping, timeout=30, what="group commit after the upgrade")
    # Every grouped entry applied on every replica: the same data everywhere.
    await trio.converged(0, [0, 1, 2])
    assert len(set(_groups(trio))) == 1, _groups(trio)
    assert trio.gm(old).store(0).get("mixed/0") is not None
