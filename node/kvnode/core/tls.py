"""TLS client contexts for calls to ringkv nodes.

A context verifies the node's certificate against the given CA bundle (PEM) and checks that the
certificate names the host the call was made to, as every HTTPS client does by default. Built
from a file (the node, the CLI) or from bytes (the operator reads ``ca.crt`` from a Secret).
"""

from __future__ import annotations

import ssl


def client_context(*, ca_file: str | None = None, ca_pem: bytes | None = None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_file`` or ``ca_pem`` (the system store if
    neither). Raises ``ssl.SSLError``/``OSError`` for an unreadable or invalid bundle."""
    cadata = ca_pem.decode("ascii") if ca_pem is not None else None
    context = ssl.create_default_context(cafile=ca_file, cadata=cadata)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
