"""The process kubelet: runs pods bound to a fake node as local processes (see kubelet.py)."""
