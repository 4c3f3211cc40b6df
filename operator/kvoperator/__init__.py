"""kvoperator: the ringkv Kubernetes operator (kopf)."""
