"""The process kubelet's HTTPS probes against a real TLS server: like the real kubelet they do
not verify the certificate (a probe calls the pod IP, which the certificate does not name, and
the kubelet does not know the CA), and a plain HTTP probe of a TLS-only port fails.

No control plane; `e2e` marker only because CI runs e2e/ with `-m e2e`.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kvharness import pki
from kvharness.kubelet import probes

from tests.support import addresses

pytestmark = pytest.mark.e2e
PORT = 7443


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[str]:
    cert = pki.serving_cert(tmp_path, dns_names=["*.demo-peers.ns.svc.cluster.local"])
    (tmp_path / "both.pem").write_bytes(cert.tls_crt + cert.tls_key)
    claim = addresses.claim_ports([PORT])
    server = http.server.ThreadingHTTPServer((claim.host, PORT), _Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "both.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield claim.host
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        claim.release()


def test_https_probe_skips_verification_and_plain_http_fails(tls_server: str) -> None:
    ports = [{"name": "http", "containerPort": PORT}]

    def check(path: str, **scheme: str) -> bool:
        action = {"path": path, "port": "http", **scheme}
        return probes.check_http(action, pod_ip=tls_server, ports=ports, timeout=3)

    assert check("/readyz", scheme="HTTPS")  # unknown CA, IP not in the SANs: still probed
    assert not check("/other", scheme="HTTPS")  # the status still decides
    assert not check("/readyz")  # plain HTTP to a TLS-only port is no answer
