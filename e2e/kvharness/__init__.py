"""ringkv e2e harness: a real local Kubernetes control plane and a process kubelet.

See e2e/DESIGN.md for why it is built this way and what the process kubelet does and does not
model.
"""
