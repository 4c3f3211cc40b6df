"""A minimal JSON REST client for the kube-apiserver, used by the harness and the process kubelet.

Why not the `kubernetes` package: the harness needs only a handful of verbs on plain dicts
(list, get, create, strategic-merge patch of /status, delete with preconditions), and raw dicts
keep the kubelet's status logic identical to what the API sees. Tests drive the cluster with real
`kubectl` instead.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JsonDict = dict[str, Any]


class ApiError(Exception):
    """Non-2xx answer; `status` is the HTTP code and `body` the decoded Status object if any."""

    def __init__(self, status: int, body: JsonDict | str, *, url: str) -> None:
        super().__init__(f"{status} from {url}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class KubeConfig:
    """The parts of the harness-written kubeconfig it uses (client certificates as files)."""

    server: str
    ca_file: str
    cert_file: str
    key_file: str

    @classmethod
    def load(cls, path: Path) -> KubeConfig:
        doc = json.loads(path.read_text())  # written as JSON by pki.write_kubeconfig
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        return cls(
            server=cluster["server"],
            ca_file=cluster["certificate-authority"],
            cert_file=user["client-certificate"],
            key_file=user["client-key"],
        )


class Kube:
    """Blocking JSON client; one instance per thread is not required (no shared connection)."""

    def __init__(self, config: KubeConfig, *, timeout: float = 15.0) -> None:
        self._server = config.server.rstrip("/")
        self._timeout = timeout
        ctx = ssl.create_default_context(cafile=config.ca_file)
        ctx.load_cert_chain(config.cert_file, config.key_file)
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))

    def request(
        self,
        method: str,
        path: str,
        body: JsonDict | None = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonDict:
        """Send one request and decode the JSON answer; raise `ApiError` on non-2xx."""
        url = self._server + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                decoded: JsonDict | str = json.loads(text)
            except ValueError:
                decoded = text
            raise ApiError(err.code, decoded, url=url) from None
        return json.loads(raw) if raw else {}

    def get(self, path: str, **params: str) -> JsonDict:
        return self.request("GET", path, params=params or None)

    def get_or_none(self, path: str) -> JsonDict | None:
        """GET that maps 404 to None (objects that legitimately may not exist)."""
        try:
            return self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def create(self, path: str, body: JsonDict) -> JsonDict:
        return self.request("POST", path, body)

    def patch_strategic(self, path: str, body: JsonDict) -> JsonDict:
        """Strategic-merge patch: pod conditions merge by `type`, keeping PodScheduled."""
        return self.request(
            "PATCH", path, body, content_type="application/strategic-merge-patch+json"
        )

    def patch_merge(self, path: str, body: JsonDict) -> JsonDict:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: JsonDict | None = None) -> JsonDict:
        return self.request("DELETE", path, body)
