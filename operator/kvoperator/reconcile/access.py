"""``NodeAccess``: what the operator needs to talk to a secured cluster's nodes, read from its
Secrets every pass (``spec.auth``: the cluster credential; ``spec.tls``: the CA, and the Raft
password Secret the operator makes once).

Every problem is returned as a ``Problem`` (a stable reason and a message that names the
Secret and the key, never a value), for the reconciler to report as a condition and an Event;
nothing here raises for a user's mistake, so a bad Secret never becomes a crash loop.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from dataclasses import dataclass

from kvoperator import manifests
from kvoperator.model import auth as model_auth
from kvoperator.model import tls as model_tls
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import ClusterSpec
from kvoperator.reconcile.ports import KubeApi, NodeApi, Obj

log = logging.getLogger(__name__)
RAFT_PASSWORD_BYTES = 32  # secrets.token_urlsafe(32): 256 bits


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str  # stable, for alerting: AuthSecretUnusable, TlsSecretUnusable, RaftSecretMissing
    message: str


class NodeAccess:
    """Feeds one cluster's credential and CA to the shared node client, and takes them back
    (``forget``) when the cluster goes or turns them off."""

    def __init__(self, kube: KubeApi, nodes: NodeApi, namespace: str) -> None:
        self._kube = kube
        self._nodes = nodes
        self._ns = namespace
        self._credential_domain: str | None = None  # set while the nodes get our credential
        self._tls_domain: str | None = None  # set while the nodes are called over HTTPS

    async def update(
        self, names: ClusterNames, spec: ClusterSpec, owner: manifests.Owner, body: Obj
    ) -> Problem | None:
        """Read the Secrets and hand their contents to the node client; the first problem."""
        problem = await self._use_credential(names, spec)
        if problem is None:
            problem = await self._use_tls(names, spec)
        if problem is None and spec.tls is not None:
            problem = await self._ensure_raft_secret(names, owner, body)
        return problem

    def forget(self) -> None:
        if self._credential_domain is not None:
            self._nodes.use_credential(self._credential_domain, None)
            self._credential_domain = None
        if self._tls_domain is not None:
            self._nodes.use_tls(self._tls_domain, None)
            self._tls_domain = None

    async def _use_credential(self, names: ClusterNames, spec: ClusterSpec) -> Problem | None:
        """The cluster credential from the ``spec.auth`` Secret (read every pass, so a rotated
        credential is used from the next pass on)."""
        if spec.auth is None:
            if self._credential_domain is not None:
                self._nodes.use_credential(self._credential_domain, None)
                self._credential_domain = None
            return None
        name = spec.auth.secret_name
        try:
            token = model_auth.cluster_token(await self._kube.get_secret(self._ns, name), name=name)
        except ValueError as e:
            return Problem("AuthSecretUnusable", f"spec.auth: {e}")
        self._nodes.use_credential(names.node_domain, token)
        self._credential_domain = names.node_domain
        return None

    async def _use_tls(self, names: ClusterNames, spec: ClusterSpec) -> Problem | None:
        """The CA from the ``spec.tls`` Secret (read every pass: a renewed CA bundle is trusted
        from the next pass on). The Secret must hold all three keys: the nodes need them."""
        if spec.tls is None:
            if self._tls_domain is not None:
                self._nodes.use_tls(self._tls_domain, None)
                self._tls_domain = None
            return None
        name = spec.tls.secret_name
        try:
            pem = model_tls.ca_pem(await self._kube.get_secret(self._ns, name), name=name)
            self._nodes.use_tls(names.node_domain, pem)
        except ValueError as e:
            return Problem("TlsSecretUnusable", f"spec.tls: {e}")
        except ssl.SSLError:
            msg = f"spec.tls: Secret {name!r}: {model_tls.CA_KEY} is not a usable CA bundle"
            return Problem("TlsSecretUnusable", msg)
        self._tls_domain = names.node_domain
        return None

    async def _ensure_raft_secret(
        self, names: ClusterNames, owner: manifests.Owner, body: Obj
    ) -> Problem | None:
        """Create ``<cluster>-raft`` with a random password before the first pod needs it.
        Once the cluster is bootstrapped a missing Secret is NOT recreated: its nodes hold the
        old password, and a pod restarted with a new one could never rejoin its Raft groups."""
        name = names.raft_secret
        found = await self._kube.get_secret(self._ns, name)
        if model_tls.raft_password_usable(found):
            return None
        if found is not None:
            msg = f"Secret {name!r} has no {model_tls.RAFT_PASSWORD_KEY!r}: recreate it with the password the nodes use"  # noqa: E501
            return Problem("RaftSecretUnusable", msg)
        if (body.get("status") or {}).get("bootstrapped"):
            msg = (
                f"Secret {name!r} (the Raft password) was deleted from a running cluster: "
                "recreate it with the password the nodes use (a new one would split the Raft "
                "groups); restarted pods wait for it"
            )
            return Problem("RaftSecretMissing", msg)
        password = secrets.token_urlsafe(RAFT_PASSWORD_BYTES)
        if await self._kube.create_secret(manifests.raft_secret(names, owner, password)):
            msg = f"Secret {name} with a new Raft password (Raft traffic is encrypted)"
            log.info("RaftSecretCreated: %s/%s", self._ns, name)
            await self._kube.emit_event(body, reason="RaftSecretCreated", message=msg)
        return None
