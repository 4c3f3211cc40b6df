"""Auth for a local cluster: ``ringkv local up --auth`` makes the files a secured cluster needs.

Layout under ``<state dir>/auth/`` (directory 0700, files 0600):

* ``tokens.json``: the tokens file every node reads (``KVNODE_AUTH_TOKENS_FILE``), holding the
  SHA-256 of two admin tokens, ``cluster`` and ``admin``. Add entries (``ringkv token new
  --tokens-file``) while the cluster runs: nodes re-read it within a second.
* ``cluster-token``: the cluster credential nodes call each other with
  (``KVNODE_CLUSTER_TOKEN_FILE``); ``ringkv local`` itself uses it for readiness probes and
  rebalancing.
* ``admin-token``: a token for the user (``export RINGKV_TOKEN=$(cat .../admin-token)``).

Existing files are kept, so ``up --auth`` on a secured cluster changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from kvnode.auth import files, tokens

AUTH_DIR = "auth"
TOKENS_ENV = "KVNODE_AUTH_TOKENS_FILE"
CLUSTER_TOKEN_ENV = "KVNODE_CLUSTER_TOKEN_FILE"


@dataclass(frozen=True, slots=True)
class AuthFiles:
    tokens_file: str
    cluster_token_file: str
    admin_token_file: str

    def node_env(self) -> dict[str, str]:
        return {TOKENS_ENV: self.tokens_file, CLUSTER_TOKEN_ENV: self.cluster_token_file}


def _write_private(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def ensure_auth_files(base_dir: str) -> AuthFiles:
    """The auth files of the local cluster in ``base_dir``, created when missing."""
    where = os.path.join(base_dir, AUTH_DIR)
    os.makedirs(where, mode=0o700, exist_ok=True)
    found = AuthFiles(
        tokens_file=os.path.join(where, "tokens.json"),
        cluster_token_file=os.path.join(where, "cluster-token"),
        admin_token_file=os.path.join(where, "admin-token"),
    )
    if all(os.path.exists(p) for p in (found.tokens_file, found.cluster_token_file)):
        return found
    cluster, admin = tokens.new_token(), tokens.new_token()
    doc = {
        "tokens": [
            tokens.entry_json(name="cluster", role=tokens.Role.ADMIN, token=cluster),
            tokens.entry_json(name="admin", role=tokens.Role.ADMIN, token=admin),
        ]
    }
    _write_private(found.cluster_token_file, cluster + "\n")
    _write_private(found.admin_token_file, admin + "\n")
    _write_private(found.tokens_file, json.dumps(doc, indent=1) + "\n")
    return found


def cluster_token(env: Mapping[str, str]) -> str | None:
    """The cluster credential named by a local cluster's node environment (None: auth off)."""
    path = env.get(CLUSTER_TOKEN_ENV)
    if not path:
        return None
    with open(path, "rb") as f:
        return files.parse_secret(f.read())


def add_token(tokens_file: str, entry: Mapping[str, str]) -> None:
    """Append ``entry`` to a tokens file (created when missing), refusing a result that would
    not load; written atomically, so running nodes never read half a file."""
    doc: dict[str, list[object]] = {"tokens": []}
    if os.path.exists(tokens_file):
        with open(tokens_file, encoding="utf-8") as f:
            doc = json.load(f)
    doc["tokens"] = [*doc.get("tokens", []), dict(entry)]
    tokens.parse_table(doc)
    _write_private(tokens_file, json.dumps(doc, indent=1) + "\n")
