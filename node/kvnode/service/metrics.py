"""Per-partition Raft metrics, collected from status snapshots at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kvnode.raft.groups import GroupManager

_ROLE_VALUE = {"follower": 0, "candidate": 1, "leader": 2}


class RaftCollector(Collector):
    """``ringkv_partition_*`` gauges for every local replica."""

    def __init__(self, groups: GroupManager, node_id: str) -> None:
        self._groups = groups
        self._node_id = node_id

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["node", "partition"]
        fams = {
            "role": GaugeMetricFamily(
                "ringkv_partition_role", "0 follower, 1 candidate, 2 leader", labels=labels
            ),
            "term": GaugeMetricFamily("ringkv_partition_term", "Raft term", labels=labels),
            "commit": GaugeMetricFamily(
                "ringkv_partition_commit_index", "Raft commit index", labels=labels
            ),
            "applied": GaugeMetricFamily(
                "ringkv_partition_applied_index", "Raft last applied index", labels=labels
            ),
            "lag": GaugeMetricFamily(
                "ringkv_partition_lag_entries",
                "Entries committed but not applied here",
                labels=labels,
            ),
            "quorum": GaugeMetricFamily(
                "ringkv_partition_has_quorum", "1 if connected to a majority", labels=labels
            ),
            "quiesced": GaugeMetricFamily(
                "ringkv_partition_quiesced",
                "1 while the idle group sends no heartbeats (node/DESIGN.md, Idle partitions)",
                labels=labels,
            ),
        }
        for st in self._groups.all_status():
            lv = [self._node_id, str(st.partition)]
            fams["role"].add_metric(lv, _ROLE_VALUE.get(st.role, -1))
            fams["term"].add_metric(lv, st.term)
            fams["commit"].add_metric(lv, st.commit_index)
            fams["applied"].add_metric(lv, st.last_applied)
            fams["lag"].add_metric(lv, st.lag)
            fams["quorum"].add_metric(lv, 1 if st.has_quorum else 0)
            fams["quiesced"].add_metric(lv, 1 if st.quiesced else 0)
        yield from fams.values()
        yield from self._group_commit()
        wakes = CounterMetricFamily(
            "ringkv_quiesce_wakes",
            "Quiesced groups woken, by reason",
            labels=["node", "reason"],
        )
        for reason, count in list(self._groups.quiescer.wakes.items()):
            wakes.add_metric([self._node_id, reason], count)
        yield wakes
        follower_reads = CounterMetricFamily(
            "ringkv_follower_reads",
            "Strong reads on a follower replica: served here once the leader confirmed a read "
            "index, declined (forwarded to the leader), or not_asked (no leader that answers)",
            labels=["node", "outcome"],
        )
        for outcome, count in list(self._groups.follower_read_outcomes.items()):
            follower_reads.add_metric([self._node_id, outcome], count)
        yield follower_reads

    def _group_commit(self) -> Iterator[CounterMetricFamily]:
        """Write entries proposed here and the client requests they carried (requests/entries
        is the mean group-commit batch size); in durability=fsync the node WAL's syncs and
        records (records/syncs: journal changes sharing one sync)."""
        gc = self._groups.group_commit.stats()
        yield self._counter(
            "ringkv_write_entries", "Raft entries proposed for client writes", gc.entries
        )
        yield self._counter(
            "ringkv_write_requests", "Client write requests those entries carried", gc.requests
        )
        wal = self._groups.wal
        if wal is not None:
            yield self._counter(
                "ringkv_wal_syncs",
                "fdatasync calls of the node's Raft WAL (one covers every journal change of a "
                "ticker loop)",
                wal.syncs,
            )
            yield self._counter(
                "ringkv_wal_records", "Journal changes recorded in the node's WAL", wal.records
            )

    def _counter(self, name: str, documentation: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation, labels=["node"])
        family.add_metric([self._node_id], value)
        return family


class DrainCollector(Collector):
    """``ringkv_node_drained``: 1 while the node is drained for maintenance."""

    def __init__(self, drained: Callable[[], bool], node_id: str) -> None:
        self._drained = drained
        self._node_id = node_id

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        fam = GaugeMetricFamily(
            "ringkv_node_drained", "1 while drained (leads no partition)", labels=["node"]
        )
        fam.add_metric([self._node_id], 1 if self._drained() else 0)
        yield fam


class ReseedCollector(Collector):
    """``ringkv_partition_needs_reseed``: 1 for each partition the map assigns here whose
    replica this volume lost (kvnode.service.identity)."""

    def __init__(self, needs_reseed: Callable[[], frozenset[int]], node_id: str) -> None:
        self._needs_reseed = needs_reseed
        self._node_id = node_id

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        fam = GaugeMetricFamily(
            "ringkv_partition_needs_reseed",
            "1: the map lists this node for the partition but its volume lost the replica",
            labels=["node", "partition"],
        )
        for p in sorted(self._needs_reseed()):
            fam.add_metric([self._node_id, str(p)], 1)
        yield fam
