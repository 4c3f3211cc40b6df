"""The hand-off race of issue 8: a joiner led before it was verified, and VERIFY then waited for
two digests from one node. Here housekeeping acts at its worst timing (the moment a map lands),
and leadership is forced onto joiners right before their VERIFY."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kvnode.core import errors
from kvnode.core import plan as planning
from kvnode.core.model import NodeInfo, PartitionMap
from kvnode.rebalance import steps as step_runner
from kvnode.rebalance.executor import RebalanceFailed, Rebalancer

from tests.unit.rebalance.fake_cluster import FakeCluster
from tests.unit.rebalance.test_executor import FAST, check_done, fake_for, scale

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(("before", "after"), [(3, 5), (5, 3), (3, 4)])
async def test_housekeeping_never_hands_leadership_to_an_unverified_joiner(
    tmp_path: Path, before: int, after: int
) -> None:
    base, target = scale(before, after)
    cluster = fake_for(base, target)
    cluster.housekeeping = True
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=FAST)
    await r.run()
    check_done(cluster, base, target)
    to_joiners = [(p, n, ok) for p, n, ok in cluster.handoffs if n not in base.replicas[p]]
    if before < after:  # joiners become preferred leaders: the race is really exercised
        assert to_joiners
    assert all(ok for _, _, ok in to_joiners), [h for h in to_joiners if not h[2]]


class JoinerLeadsAtVerify(FakeCluster):
    """Before each partition's first digest, leadership jumps to the newest voter (the joiner
    being verified), as an election or an early hand-off would make it."""

    def __init__(self, pmap: PartitionMap, *, extra: list[NodeInfo]) -> None:
        super().__init__(pmap, extra=extra)
        self.base = pmap
        self.forced: dict[int, str] = {}
        self.compared: dict[int, set[str]] = {}

    async def start_digest(self, leader: NodeInfo, partition: int) -> int:
        g = self.groups[partition]
        joiner = g.voters[-1]
        if partition not in self.forced and joiner not in self.base.replicas[partition]:
            self.forced[partition] = joiner
            g.leader = joiner
            raise errors.NotLeader(f"{leader.node_id} lost the lead of {partition}", leader=joiner)
        return await super().start_digest(leader, partition)

    async def digest(self, node: NodeInfo, partition: int, index: int) -> str | None:
        self.compared.setdefault(partition, set()).add(node.node_id)
        return await super().digest(node, partition, index)


async def test_verify_works_when_the_joiner_leads(tmp_path: Path) -> None:
    base, target = scale(3, 5, partitions=8)
    cluster = JoinerLeadsAtVerify(
        base, extra=[n for n in target.nodes if not base.has_node(n.node_id)]
    )
    cluster.housekeeping = True  # hands leadership back to each map's preferred replica
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=FAST)
    await r.run()
    assert cluster.forced  # the joiner led its own VERIFY in these partitions
    for p, joiner in cluster.forced.items():
        others = cluster.compared[p] - {joiner}
        assert others & set(base.replicas[p]), (p, cluster.compared[p])  # checked vs a trusted copy
    check_done(cluster, base, target)


async def test_a_verify_that_cannot_finish_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_runner, "DIGEST_ROUND_S", 0.05)
    base, target = scale(3, 4, partitions=4)
    cluster = fake_for(base, target)
    original = cluster.digest

    async def never_on_joiner(node: NodeInfo, partition: int, index: int) -> str | None:
        if node.node_id == "n3":
            return None  # the new copy never finishes its checksum
        return await original(node, partition, index)

    cluster.digest = never_on_joiner  # type: ignore[method-assign]
    options = dataclasses.replace(FAST, step_timeout_s=0.5)
    r = Rebalancer.create(str(tmp_path / "s.json"), base, target, admin=cluster, options=options)
    with pytest.raises(RebalanceFailed) as failed:
        await r.run()
    reason = failed.value.reason
    assert "verify the copy on n3" in reason
    assert "did not succeed within 0.5s" in reason
    assert "n3 had not computed its checksum" in reason
    assert "[]" not in reason
    assert "Unavailable(" not in reason


def test_steps_read_as_words() -> None:
    step = planning.Step(2, planning.StepKind.VERIFY, "node-3")
    assert step_runner.describe(step) == "partition 2: verify the copy on node-3"
    assert all(
        step_runner.describe(planning.Step(0, k, "x")).startswith("partition 0: ")
        for k in planning.StepKind
    )
