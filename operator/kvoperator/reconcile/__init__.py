"""The imperative shell of one KVCluster: observe (Kubernetes + node admin API) -> decide (pure)
-> act, driven by ``Reconciler``. It sees Kubernetes only through ``ports.KubeApi`` and nodes
only through ``ports.NodeApi``, which the layer below implements and unit tests fake."""
