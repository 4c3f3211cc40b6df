"""``spec.tls``: the Secret a TLS KVCluster's nodes serve with, and the Raft password (pure).

The TLS Secret (in the KVCluster's namespace, cert-manager's ``kubernetes.io/tls`` format):

* ``tls.crt`` / ``tls.key``: the serving certificate (and its key) every node presents (nodes
  present no client certificate to each other). Its SANs must cover the node DNS names the
  operator sets as ``KVNODE_HOST`` (``*.<cluster>-peers.<ns>.svc.<domain>``) and the client
  Service names (``<cluster>.<ns>.svc.<domain>``, ``<cluster>.<ns>.svc``, ``<cluster>.<ns>``,
  ``<cluster>``) that clients call. ``required_sans`` lists them.
* ``ca.crt``: the CA bundle nodes verify peers against; the operator reads it from the Secret
  through the API to verify the nodes it calls.

The nodes re-read the three files when the kubelet updates the volume (cert-manager renewing
the certificate), so a rotation needs no restart as long as the CA still signs both old and new.

Raft traffic does not go over TLS: PySyncObj encrypts and authenticates it with a shared
password. The operator makes that password itself (``<cluster>-raft`` Secret, key ``password``,
owned by the KVCluster) when it first creates the cluster; it never changes afterwards, since
nodes holding different passwords cannot form a quorum.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from kvoperator.model.names import ClusterNames

CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
KEYS = (CERT_KEY, KEY_KEY, CA_KEY)
MOUNT_DIR = "/etc/ringkv/tls"
VOLUME = "tls"
RAFT_PASSWORD_KEY = "password"
RAFT_MOUNT_DIR = "/etc/ringkv/raft"
RAFT_VOLUME = "raft"
CA_FILE = f"{MOUNT_DIR}/{CA_KEY}"
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def ca_pem(secret: Mapping[str, Any] | None, *, name: str) -> bytes:
    """The CA bundle (PEM) of the TLS Secret ``secret`` (as the API returns it), after checking
    that it has every key the nodes need. ValueError says what is wrong, never a value."""
    if secret is None:
        raise ValueError(f"Secret {name!r} named in spec.tls does not exist")
    data = secret.get("data") or {}
    missing = [k for k in KEYS if not data.get(k)]
    if missing:
        raise ValueError(
            f"Secret {name!r} lacks key(s) {', '.join(missing)} (it needs {', '.join(KEYS)}, "
            "the cert-manager format)"
        )
    try:
        pem = base64.b64decode(data[CA_KEY], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ValueError(f"Secret {name!r}: {CA_KEY} is not valid base64") from None
    if _PEM_CERT not in pem:
        raise ValueError(f"Secret {name!r}: {CA_KEY} holds no PEM certificate")
    return pem


def raft_password_usable(secret: Mapping[str, Any] | None) -> bool:
    """Whether the operator's Raft Secret holds a non-empty password (values never shown)."""
    if secret is None:
        return False
    return bool((secret.get("data") or {}).get(RAFT_PASSWORD_KEY))


def required_sans(names: ClusterNames) -> tuple[str, ...]:
    """DNS names the serving certificate must cover: the nodes' headless names (a wildcard)
    and every form of the client Service name."""
    svc, ns = names.client_service, names.namespace
    return (
        f"*.{names.node_domain}",
        f"{svc}.{ns}.svc.{names.cluster_domain}",
        f"{svc}.{ns}.svc",
        f"{svc}.{ns}",
        svc,
    )
