"""The node's TLS files (certificate, key, CA bundle), re-read when they change.

Rotation needs no restart, like the tokens file (``kvnode.auth.files``): at most once per
``interval_s``, when a context is asked for, the three files' identities are compared (``stat``,
which follows a Kubernetes Secret volume's ``..data`` symlink swap) and, if any changed, both
contexts are rebuilt from the files. What must stay true:

* The listening socket keeps ONE server context for its lifetime (asyncio cannot swap it), so
  that context's ``sni_callback``, which OpenSSL calls on every ClientHello (with or without a
  server name), switches the connection to the latest context: new connections get the new
  certificate, established ones keep theirs.
* A rebuild that fails (a half-written pair: the new certificate with the old key, a bad PEM)
  keeps the previous contexts and logs once per change of the files; at start a bad file is an
  error naming the file (``TlsConfigError``), so a typo fails loudly.
* Node-to-node calls take ``client_context()`` per call: a new CA bundle is used for the next
  new connection (aiohttp pools connections per context object).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from kvnode.auth.files import StatKey, stat_key
from kvnode.core import tls

log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable or invalid; the message names the file."""


@dataclass(frozen=True, slots=True)
class TlsPaths:
    cert_file: str
    key_file: str
    ca_file: str


def _readable(path: str, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TlsConfigError(f"{what} {path} is unreadable: {exc.strerror}") from None


def build_server_context(paths: TlsPaths) -> ssl.SSLContext:
    """A TLS 1.2+ server context presenting the certificate chain in ``cert_file`` with the
    key in ``key_file``. Raises ``TlsConfigError`` naming the file that is wrong."""
    _readable(paths.cert_file, "TLS certificate file")
    _readable(paths.key_file, "TLS key file")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=paths.cert_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"TLS certificate file {paths.cert_file} holds no valid PEM certificate: {exc}"
        ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(paths.cert_file, paths.key_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"TLS key file {paths.key_file} is not a valid PEM private key for the certificate "
            f"in {paths.cert_file}: {exc}"
        ) from None
    return context


def build_client_context(paths: TlsPaths) -> ssl.SSLContext:
    """A verifying client context trusting the bundle in ``ca_file`` (``kvnode.core.tls``)."""
    _readable(paths.ca_file, "TLS CA file")
    try:
        return tls.client_context(ca_file=paths.ca_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"TLS CA file {paths.ca_file} holds no valid PEM certificate: {exc}"
        ) from None


class ReloadingTls:
    """The server and client contexts built from ``paths``, rebuilt when the files change."""

    def __init__(
        self,
        paths: TlsPaths,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = paths
        self._interval = interval_s
        self._clock = clock
        self._key = self._stat()
        self._server = build_server_context(paths)  # at start a bad file raises
        self._client = build_client_context(paths)
        self._checked = clock()
        self._failed_key: tuple[StatKey | None, ...] | None = None
        self.reloads = 0
        self.listening = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        """The context to listen with: its handshakes continue on ``current_server()``. It
        carries the first certificate itself too (OpenSSL wants one before the callback)."""
        self.listening.minimum_version = ssl.TLSVersion.TLSv1_2
        self.listening.load_cert_chain(paths.cert_file, paths.key_file)
        self.listening.sni_callback = self._on_client_hello

    def _stat(self) -> tuple[StatKey | None, ...]:
        return tuple(
            stat_key(p) for p in (self.paths.cert_file, self.paths.key_file, self.paths.ca_file)
        )

    def _on_client_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        conn.context = self.current_server()

    def current_server(self) -> ssl.SSLContext:
        self._maybe_refresh()
        return self._server

    def client_context(self) -> ssl.SSLContext:
        self._maybe_refresh()
        return self._client

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            self.refresh()

    def refresh(self) -> bool:
        """Rebuild now if a file changed; True when new contexts were adopted."""
        key = self._stat()
        if key == self._key or key == self._failed_key:
            return False
        try:
            server, client = build_server_context(self.paths), build_client_context(self.paths)
        except (TlsConfigError, OSError) as exc:  # OSError: a file replaced while being read
            log.error("TLS files changed but are unusable, keeping the previous ones: %s", exc)
            self._failed_key = key
            return False
        self._key, self._failed_key = key, None
        self._server, self._client = server, client
        self.reloads += 1
        log.info("TLS files reloaded (%s): new connections use them", self.paths.cert_file)
        return True
