"""Operator settings: one typed object, read once from ``RINGKV_OPERATOR_*`` environment variables.

Nothing else in the operator reads ``os.environ``. Each field's docstring is its documentation;
the variable is the field name upper-cased with the prefix (``RINGKV_OPERATOR_METRICS_PORT``).
The Helm chart sets them from its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kvnode.core import envconfig

PREFIX = "RINGKV_OPERATOR_"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch, comma-separated; empty: every namespace (cluster-wide)."""
    log_level: str = "INFO"
    """Python logging level of the operator."""
    metrics_port: int = 9090
    """Port of the Prometheus /metrics endpoint (0: no endpoint)."""
    health_port: int = 8080
    """Port of kopf's liveness endpoint /healthz (0: none)."""
    bind_host: str = "0.0.0.0"
    """Address the /metrics and /healthz endpoints listen on (the pod IP in the chart)."""
    default_image: str = "ringkv/ringkv:0.1.0"
    """Node image used when a KVCluster does not set spec.image."""
    cluster_domain: str = "cluster.local"
    """DNS domain of the Kubernetes cluster (pod names are <pod>.<svc>.<ns>.svc.<domain>)."""
    reconcile_interval_s: float = 5.0
    """Longest pause between two reconcile passes of one KVCluster (events wake it sooner)."""
    busy_interval_s: float = 1.0
    """Pause between passes while work is in progress (bootstrap, scaling, rebalancing)."""
    node_timeout_s: float = 3.0
    """Deadline of one observation call to a node (GET /v1/cluster)."""
    rebalance_concurrency: int = 2
    """Partitions moved at once by a rebalance."""
    rebalance_step_timeout_s: float = 600.0
    """Deadline of one rebalance step, retries included."""
    retry_after_failure_s: float = 60.0
    """Pause after an aborted rebalance before the operator plans again."""
    kube_timeout_s: float = 15.0
    """Deadline of one Kubernetes API call."""

    def validate(self) -> None:
        for port in (self.metrics_port, self.health_port):
            if not 0 <= port < 32768:
                raise ValueError(f"port {port} must be in 0..32767 (below the ephemeral range)")
        if self.busy_interval_s <= 0 or self.reconcile_interval_s < self.busy_interval_s:
            raise ValueError("need 0 < busy_interval_s <= reconcile_interval_s")
        if self.rebalance_concurrency < 1:
            raise ValueError("rebalance_concurrency must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorSettings:
        """Parse every field from ``env`` (missing: default); ValueError names the variable."""
        settings = envconfig.from_env(cls, env, prefix=PREFIX)
        settings.validate()
        return settings
