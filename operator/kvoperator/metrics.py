"""The operator's Prometheus metrics, one labelled series per KVCluster.

A registry is passed in (``prometheus_client.REGISTRY`` in production, a fresh one per test) so
tests can read values without global state.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

LABELS = ("namespace", "cluster")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"ringkv_operator_{name}", doc, LABELS, registry=registry)

        self.reconciles = Counter(
            "ringkv_operator_reconciles",
            "Reconcile passes, by result (ok, error, invalid_spec).",
            (*LABELS, "result"),
            registry=registry,
        )
        self.rebalances = Counter(
            "ringkv_operator_rebalances",
            "Rebalances finished, by outcome (done, failed).",
            (*LABELS, "outcome"),
            registry=registry,
        )
        self.replicas = gauge("cluster_replicas", "Nodes in the map in effect.")
        self.ready_replicas = gauge("cluster_ready_replicas", "Ready nodes of the map.")
        self.epoch = gauge("cluster_map_epoch", "Epoch of the newest installed map.")
        self.rebalancing = gauge("rebalance_active", "1 while a rebalance is unfinished.")
        self.partitions_done = gauge("rebalance_partitions_moved", "Partitions moved so far.")
        self.partitions_total = gauge("rebalance_partitions_total", "Partitions to move.")
        self.bytes_moved = gauge("rebalance_bytes_moved", "Bytes copied to joining replicas.")
        self.eta = gauge("rebalance_eta_seconds", "Estimated seconds left (-1: unknown).")
        self.quorum_lost = gauge(
            "partitions_quorum_lost", "Partitions without a quorum or a leader."
        )

    def forget(self, namespace: str, cluster: str) -> None:
        """Drop a deleted cluster's series."""
        for g in (
            self.replicas,
            self.ready_replicas,
            self.epoch,
            self.rebalancing,
            self.partitions_done,
            self.partitions_total,
            self.bytes_moved,
            self.eta,
            self.quorum_lost,
        ):
            with contextlib.suppress(KeyError):
                g.remove(namespace, cluster)
