"""TLS for a local cluster: ``ringkv local up --tls`` makes a CA, node certificates and a Raft
password, the files a node reads from ``KVNODE_TLS_*`` and ``KVNODE_RAFT_PASSWORD_FILE``.

Layout under ``<state dir>/tls/`` (directory 0700, keys and password 0600), cert-manager style
names so the files look like the Secret a Kubernetes cluster mounts:

* ``ca.crt`` / ``ca.key``: a self-signed CA, made once; ``ca.crt`` is every node's
  ``KVNODE_TLS_CA_FILE`` and the user's ``--cacert``;
* ``<node-id>/tls.crt``, ``tls.key``: one certificate per node, naming the node's advertised
  address (IP SAN) and ``localhost``;
* ``raft-password``: the password every partition's Raft traffic is encrypted with.

Existing files are kept, so ``up --tls`` again (or ``scale``) only adds what is missing. The
certificate builders are also what the tests use for wrong-CA and rotation scenarios.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kvnode.core import tls

TLS_DIR = "tls"
CERT_ENV = "KVNODE_TLS_CERT_FILE"
KEY_ENV = "KVNODE_TLS_KEY_FILE"
CA_ENV = "KVNODE_TLS_CA_FILE"
RAFT_PASSWORD_ENV = "KVNODE_RAFT_PASSWORD_FILE"
VALID_DAYS = 365


@dataclass(frozen=True, slots=True)
class Pem:
    """A certificate and its private key, PEM-encoded."""

    cert: bytes
    key: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> Any:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def make_ca(name: str = "ringkv local CA") -> Pem:
    """A self-signed CA certificate (may sign node certificates, nothing below them)."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(cert=cert.public_bytes(serialization.Encoding.PEM), key=_key_pem(key))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue(ca: Pem, *, name: str, hosts: list[str]) -> Pem:
    """A server certificate for ``hosts`` (IP addresses become IP SANs, names DNS SANs) signed
    by ``ca``: what a client checks the host name it called against."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    cert = (
        _builder(name, ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(cert=cert.public_bytes(serialization.Encoding.PEM), key=_key_pem(key))


def write_file(path: str, data: bytes, *, private: bool) -> None:
    """Atomic write (a node polling the file never reads half of it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The TLS files of a local cluster (see module doc)."""

    base: str

    @property
    def ca_file(self) -> str:
        return os.path.join(self.base, "ca.crt")

    @property
    def raft_password_file(self) -> str:
        return os.path.join(self.base, "raft-password")

    def cluster_env(self) -> dict[str, str]:
        """What every node shares (recorded in ``cluster.json``); each node adds its own
        certificate (``node_env``)."""
        return {CA_ENV: self.ca_file, RAFT_PASSWORD_ENV: self.raft_password_file}

    def cert_paths(self, node_id: str) -> tuple[str, str]:
        where = os.path.join(self.base, node_id)
        return os.path.join(where, "tls.crt"), os.path.join(where, "tls.key")


def ensure_tls_files(base_dir: str) -> TlsFiles:
    """The CA and Raft password of the local cluster in ``base_dir``, created when missing."""
    found = TlsFiles(os.path.join(base_dir, TLS_DIR))
    os.makedirs(found.base, mode=0o700, exist_ok=True)
    if not os.path.exists(found.ca_file):
        ca = make_ca()
        write_file(os.path.join(found.base, "ca.key"), ca.key, private=True)
        write_file(found.ca_file, ca.cert, private=False)
    if not os.path.exists(found.raft_password_file):
        write_file(found.raft_password_file, secrets.token_urlsafe(32).encode(), private=True)
    return found


def node_env(cluster_env: Mapping[str, str], node_id: str, *, host: str) -> dict[str, str]:
    """Node ``node_id``'s certificate files (``KVNODE_TLS_CERT_FILE``/``KEY_FILE``) when the
    cluster has TLS on (empty otherwise): the certificate names ``host`` and ``localhost`` and is
    made when missing or when it names another address (kept otherwise, also a rotated one)."""
    ca_file = cluster_env.get(CA_ENV)
    if not ca_file:
        return {}
    files = TlsFiles(os.path.dirname(ca_file))
    cert_file, key_file = files.cert_paths(node_id)
    if not _names(cert_file, host):
        os.makedirs(os.path.dirname(cert_file), mode=0o700, exist_ok=True)
        pem = issue(_read_ca(files.base), name=node_id, hosts=[host, "localhost"])
        write_file(key_file, pem.key, private=True)
        write_file(cert_file, pem.cert, private=False)
    return {CERT_ENV: cert_file, KEY_ENV: key_file}


def client_context(cluster_env: Mapping[str, str]) -> ssl.SSLContext | None:
    """The verifying context ``ringkv local`` calls its nodes with (None: TLS off)."""
    ca_file = cluster_env.get(CA_ENV)
    return None if not ca_file else tls.client_context(ca_file=ca_file)


def url(http_url: str, cluster_env: Mapping[str, str]) -> str:
    """A node's URL as users call it: ``https://`` when the cluster has TLS on."""
    if cluster_env.get(CA_ENV) and http_url.startswith("http://"):
        return "https://" + http_url[len("http://") :]
    return http_url


def _read_ca(base: str) -> Pem:
    with (
        open(os.path.join(base, "ca.crt"), "rb") as c,
        open(os.path.join(base, "ca.key"), "rb") as k,
    ):
        return Pem(cert=c.read(), key=k.read())


def _names(cert_file: str, host: str) -> bool:
    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return _san(host) in list(san)
