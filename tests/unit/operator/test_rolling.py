"""The operator-driven rolling upgrade: decide() rows for each phase, and a whole roll through
the reconciler against fake Kubernetes and the fake node cluster (one pod at a time, followers
first, drained before the delete and undrained once back, paused stops it)."""

from __future__ import annotations

import dataclasses

from kvoperator import decide as d
from kvoperator.decide import rolling
from kvoperator.model.observed import NodeReport, Observed
from kvoperator.model.status import Phase

from tests.unit.operator.builders import NAMES, NOW, cluster_map, observed, spec
from tests.unit.operator.harness import Harness

PMAP = cluster_map(range(3), partitions=6, epoch=3)
OLD, NEW = "demo-old", "demo-new"


def leaders_by(pattern: dict[int, int]) -> tuple[str | None, ...]:
    """partition -> ordinal of its leader."""
    return tuple(NAMES.pod(pattern[p]) for p in range(PMAP.partitions))


# demo-0 leads 3 partitions, demo-1 leads 2, demo-2 leads 1 (each leader is a replica: RF 3
# on 3 nodes puts every node in every partition).
LEADERS = leaders_by({0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2})


def obs(revisions: dict[int, str], *, ready: list[int] | None = None,
        created: dict[int, float] | None = None, leaders: tuple[str | None, ...] = LEADERS,
        up: list[int] | None = None) -> Observed:  # fmt: skip
    base = observed(sts=3, running=range(3), ready=range(3) if ready is None else ready,
                    pmap=PMAP, bootstrapped=True)  # fmt: skip
    pods = tuple(
        dataclasses.replace(
            p, revision=revisions[p.ordinal], created=(created or {}).get(p.ordinal, NOW - 3600)
        )
        for p in base.pods
    )
    alive = range(3) if up is None else up
    nodes = tuple(
        NodeReport(o, reachable=o in alive, epoch=3, leaders=leaders if o in alive else None)
        for o in range(3)
    )
    return dataclasses.replace(base, pods=pods, nodes=nodes, update_revision=NEW)


def decide(o: Observed, **fields: object) -> d.Decision:
    return d.decide(spec(replicas=3, partitions=6, **fields), o, NAMES, objects_current=True)


def test_all_current_is_ready() -> None:
    out = decide(obs({0: NEW, 1: NEW, 2: NEW}))
    assert out.phase is Phase.READY
    assert out.actions == ()


def marked(o: Observed, ordinal: int) -> Observed:
    """The volume of ``ordinal`` carries the roll's drain mark."""
    pvcs = tuple(dataclasses.replace(v, roll_drained=v.ordinal == ordinal) for v in o.pvcs)
    return dataclasses.replace(o, pvcs=pvcs)


def test_the_follower_with_fewest_leaderships_goes_first_drained() -> None:
    out = decide(obs({0: OLD, 1: OLD, 2: OLD}))
    assert out.phase is Phase.UPGRADING
    (roll,) = out.actions
    assert roll == d.RollPod(2, NEW)  # demo-2 leads 1 < demo-1's 2 < demo-0's 3
    assert "draining demo-2 (2 more to roll)" in out.message
    assert out.ready.status is False
    assert out.degraded is None


def test_the_node_with_most_leaderships_goes_last() -> None:
    out = decide(obs({0: OLD, 1: NEW, 2: NEW}))
    (roll,) = out.actions
    assert roll == d.RollPod(0, NEW)


def test_a_rolled_pod_is_undrained_before_the_next_goes() -> None:
    out = decide(marked(obs({0: OLD, 1: OLD, 2: NEW}), 2))
    (undrain,) = out.actions
    assert undrain == d.UndrainNode(2, PMAP)
    assert out.phase is Phase.UPGRADING
    assert "undraining demo-2 once it caught up (2 more to roll)" in out.message
    # The last one too: the roll is over only once nothing is drained for it.
    last = decide(marked(obs({0: NEW, 1: NEW, 2: NEW}), 0))
    assert last.actions == (d.UndrainNode(0, PMAP),)
    assert last.phase is Phase.UPGRADING


def drained(o: Observed, ordinal: int) -> Observed:
    nodes = tuple(dataclasses.replace(n, drained=n.ordinal == ordinal) for n in o.nodes)
    return dataclasses.replace(o, nodes=nodes)


def test_a_drained_pod_still_on_the_old_template_is_finished_first() -> None:
    """The operator stopped between the drain and the delete: that pod goes, not another."""
    out = decide(marked(obs({0: OLD, 1: OLD, 2: OLD}), 0))
    assert out.actions == (d.RollPod(0, NEW),)  # still leads: drained again, not deleted


def test_deleted_only_once_seen_drained_and_leading_nothing() -> None:
    leaders = leaders_by({0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 0})  # demo-2 leads nothing
    o = marked(obs({0: OLD, 1: OLD, 2: OLD}, leaders=leaders), 2)
    assert decide(o).actions == (d.RollPod(2, NEW),)  # its drain flag not seen yet
    out = decide(drained(o, 2))
    assert out.actions == (d.RollPod(2, NEW, delete=True),)
    assert "replacing demo-2, drained (2 more to roll)" in out.message
    # A leadership handed back to it meanwhile: drained again, not deleted.
    back = marked(obs({0: OLD, 1: OLD, 2: OLD}, leaders=leaders_by({**dict.fromkeys(range(6), 1),
                                                                   5: 2})), 2)  # fmt: skip
    assert decide(drained(back, 2)).actions == (d.RollPod(2, NEW),)


def test_a_rolled_pod_starting_after_the_last_roll_is_waited_for() -> None:
    o = marked(obs({0: NEW, 1: NEW, 2: NEW}, ready=[0, 1], created={2: NOW - 5}), 2)
    out = decide(o)
    assert out.phase is Phase.UPGRADING
    assert out.actions == ()
    assert out.degraded is None


def test_an_undrain_is_not_held_back_by_a_lost_quorum() -> None:
    leaders = (*LEADERS[:5], None)
    out = decide(marked(obs({0: OLD, 1: OLD, 2: NEW}, leaders=leaders), 2))
    assert out.actions == (d.UndrainNode(2, PMAP),)


def test_waits_for_the_rolled_pod_to_be_ready() -> None:
    o = obs({0: OLD, 1: OLD, 2: NEW}, ready=[0, 1], created={2: NOW - 5})
    out = decide(o)
    assert out.phase is Phase.UPGRADING
    assert out.actions == ()
    assert "waiting for demo-2" in out.message
    assert out.degraded is None


def test_a_rolled_pod_that_never_gets_ready_stops_the_roll() -> None:
    o = obs({0: OLD, 1: OLD, 2: NEW}, ready=[0, 1],
            created={2: NOW - rolling.STUCK_AFTER_S - 1})  # fmt: skip
    out = decide(o)
    assert out.phase is Phase.DEGRADED
    assert out.actions == ()
    assert out.degraded is not None
    assert out.degraded.reason == "RollingUpdateStuck"


def test_an_old_pod_not_ready_is_not_rolled_over() -> None:
    out = decide(obs({0: OLD, 1: OLD, 2: OLD}, ready=[0, 1]))
    assert out.actions == ()
    assert out.phase is Phase.DEGRADED


def test_no_roll_while_a_partition_has_no_leader() -> None:
    leaders = (*LEADERS[:5], None)
    out = decide(obs({0: OLD, 1: OLD, 2: OLD}, leaders=leaders))
    assert out.actions == ()
    assert out.quorum.lost == (5,)


def test_paused_stops_the_roll() -> None:
    out = decide(obs({0: OLD, 1: OLD, 2: OLD}), paused=True)
    assert out.phase is Phase.PAUSED
    assert out.actions == ()


def test_unknown_revisions_roll_nothing() -> None:
    o = obs({0: OLD, 1: OLD, 2: OLD})
    out = decide(dataclasses.replace(o, update_revision=None))
    assert out.phase is Phase.READY
    base = dataclasses.replace(o, pods=tuple(dataclasses.replace(p, revision=None) for p in o.pods))
    assert decide(base).phase is Phase.READY


async def test_an_image_change_rolls_every_pod_one_at_a_time() -> None:
    h = Harness({"replicas": 3, "partitions": 6})
    await h.ready()
    before = h.kube.revisions()
    assert len(set(before.values())) == 1
    h.kube.update_spec(image="ringkv:v2")
    down_at_once = 0

    def done() -> bool:
        nonlocal down_at_once
        missing = 3 - len(h.kube.revisions())
        down_at_once = max(down_at_once, missing)
        revs = set(h.kube.revisions().values())
        return h.converged() and len(revs) == 1 and revs != set(before.values())

    await h.until("rolled", done)
    assert sorted(h.kube.rolled) == ["demo-0", "demo-1", "demo-2"]
    assert down_at_once <= 1
    sts = h.kube.get("StatefulSet", "ns", "demo")
    assert sts is not None
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "ringkv:v2"
    assert h.kube.reasons().count("PodRolled") == 3
    assert h.kube.reasons().count("NodeUndrained") == 3
    # Each pod led nothing when deleted: its node had been drained first.
    assert all(led == [] for led in h.led_when_deleted.values()), h.led_when_deleted
    assert not any(h.nodes.drained.values())
    assert not any("ringkv.io/drained-for-roll" in (v["metadata"].get("annotations") or {})
                   for (kind, _, _), v in h.kube.objects.items()
                   if kind == "PersistentVolumeClaim")  # fmt: skip
    assert h.errors() == 0


async def test_pause_mid_roll_stops_it() -> None:
    h = Harness({"replicas": 3, "partitions": 6})
    await h.ready()
    h.kube.update_spec(image="ringkv:v2")
    await h.until("first pod rolled", lambda: len(h.kube.rolled) == 1)
    h.kube.update_spec(paused=True)
    for _ in range(20):
        await h.step()
    assert len(h.kube.rolled) == 1
    assert h.status["phase"] == "Paused"
