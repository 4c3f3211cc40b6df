"""The only package that talks to the Kubernetes API (the official ``kubernetes`` client).

``KubernetesApi`` implements ``kvoperator.reconcile.ports.KubeApi``; ``ConfigMapStore`` keeps the
rebalance executor's state in a ConfigMap owned by the KVCluster.
"""

from kvoperator.kube.client import KubernetesApi, load_config
from kvoperator.kube.store import ConfigMapStore

__all__ = ["ConfigMapStore", "KubernetesApi", "load_config"]
