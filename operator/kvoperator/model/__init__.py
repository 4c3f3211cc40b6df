"""The operator's pure value types: the KVCluster spec (``spec``), derived names and node
identities (``names``), what the operator observes (``observed``) and what it reports
(``status``). No I/O, no kopf, no Kubernetes client: everything above builds on these."""
