"""The kubelet's `/containerLogs` endpoint, so `kubectl logs` works against the process kubelet.

The apiserver proxies `kubectl logs` to `https://<node InternalIP>:<daemonEndpoints port>/
containerLogs/<ns>/<pod>/<container>`; this serves the container's log file from there (TLS with
a certificate from the harness CA, on 127.0.0.1 only). Supported query parameters: `tailLines`,
`limitBytes`, `follow`. Restarts append to the same file, so `previous` returns the same text.
"""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

log = logging.getLogger(__name__)


def select(data: bytes, *, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """Apply tailLines and limitBytes to a log (pure)."""
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data


def log_path(logs_dir: Path, url_path: str) -> Path | None:
    """Map /containerLogs/<ns>/<pod>/<container> to the log file, or None if malformed."""
    parts = url_path.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "containerLogs" or any(p in ("", ".", "..") for p in parts):
        return None
    return logs_dir / f"{parts[1]}_{parts[2]}_{parts[3]}.log"


class _Handler(http.server.BaseHTTPRequestHandler):
    logs_dir: Path
    stopping: threading.Event

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = log_path(self.logs_dir, url.path)
        if path is None or not path.exists():
            self.send_error(404, "no such container log")
            return
        tail = int(query["tailLines"]) if "tailLines" in query else None
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        data = select(path.read_bytes(), tail_lines=tail, limit_bytes=limit)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(data)
        if query.get("follow") == "true":
            self._follow(path, offset=path.stat().st_size)

    def _follow(self, path: Path, *, offset: int) -> None:
        """Stream appended output until the client goes away or the kubelet stops."""
        while not self.stopping.is_set():
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                if chunk:
                    offset += len(chunk)
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (OSError, ValueError):
                return
            time.sleep(0.2)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("logserver: " + format, *args)


class LogServer:
    """HTTPS server on <host>:<port> (the node's InternalIP) in a daemon thread."""

    def __init__(self, logs_dir: Path, *, cert: Path, key: Path, host: str, port: int) -> None:
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"logs_dir": logs_dir, "stopping": self._stopping})
        self._httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> int:
        self._thread.start()
        log.info("container log endpoint on https://%s:%d/containerLogs/", self.host, self.port)
        return self.port

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
