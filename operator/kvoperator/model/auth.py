"""``spec.auth``: the Secret a secured KVCluster's nodes and the operator read (pure).

The Secret (in the KVCluster's namespace) holds two keys:

* ``tokens.json``: the node tokens file (README, Security): every token's SHA-256, role and
  optional key prefix. Mounted into every node pod; nodes re-read it when the kubelet updates
  the volume, so adding, revoking or rotating a token needs no restart.
* ``cluster-token``: the cluster credential, an admin token listed in ``tokens.json``. Nodes
  send it when they call each other (forwarding, rebalancing); the operator reads it from the
  Secret through the API for its own admin calls (``GET /v1/cluster``, map installs, moves).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

TOKENS_KEY = "tokens.json"
CLUSTER_TOKEN_KEY = "cluster-token"
MOUNT_DIR = "/etc/ringkv/auth"
VOLUME = "auth"


def cluster_token(secret: Mapping[str, Any] | None, *, name: str) -> str:
    """The cluster credential in ``secret`` (a Secret object as the API returns it); ValueError
    says what is wrong without ever including a value."""
    if secret is None:
        raise ValueError(f"Secret {name!r} named in spec.auth does not exist")
    data = secret.get("data") or {}
    missing = [k for k in (TOKENS_KEY, CLUSTER_TOKEN_KEY) if k not in data]
    if missing:
        raise ValueError(f"Secret {name!r} lacks key(s) {', '.join(missing)}")
    try:
        token = base64.b64decode(data[CLUSTER_TOKEN_KEY], validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, TypeError):
        raise ValueError(
            f"Secret {name!r}: {CLUSTER_TOKEN_KEY} is not valid base64 UTF-8"
        ) from None
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"Secret {name!r}: {CLUSTER_TOKEN_KEY} must hold exactly one token")
    return token
