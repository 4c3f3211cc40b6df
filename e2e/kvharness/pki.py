"""Certificates and the admin kubeconfig for the local control plane.

Uses the system `openssl` binary (Debian base image) so no extra Python dependency is needed.
One CA signs the apiserver and kubelet serving certs and the admin client cert
(O=system:masters, so RBAC lets the tests and the controller manager do anything); a separate
RSA key signs service-account tokens, which makes `kubectl create token` work for operator-RBAC
tests later.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of the generated key material."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def kubelet_crt(self) -> Path:
        return self.dir / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.dir / "kubelet.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(pki: Pki, name: str, subject: str, ext: str | None) -> None:
    d = pki.dir
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=d)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=d)
    extra: list[str] = []
    if ext is not None:
        (d / f"{name}.ext").write_text(ext)
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "3650", "-out", f"{name}.crt", *extra, cwd=d,
    )  # fmt: skip


def create_pki(directory: Path, *, host_ip: str) -> Pki:
    """Create (or reuse, if complete) the CA, serving, admin and service-account keys.

    The apiserver's certificate names `host_ip` (what pods get as KUBERNETES_SERVICE_HOST) and
    the in-cluster names of the `kubernetes` Service.
    """
    pki = Pki(directory)
    if pki.sa_pub.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-key", "ca.key", "-subj", "/CN=ringkv-e2e-ca",
        "-days", "3650", "-out", "ca.crt", cwd=directory,
    )  # fmt: skip
    names = "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sans = f"IP:{host_ip},IP:127.0.0.1,DNS:localhost,{names},{names}.cluster.local"
    _signed(pki, "apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\n")
    _signed(pki, "admin", "/CN=ringkv-admin/O=system:masters", None)
    _signed(pki, "kubelet", "/CN=ringkv-e2e-node", f"subjectAltName=IP:{host_ip}\n")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
    return pki


def write_kubeconfig(path: Path, *, server: str, pki: Pki) -> Path:
    """Write an admin kubeconfig as JSON (valid YAML for kubectl and kopf; parseable without
    PyYAML), with file references to the certificates."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ringkv-e2e",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(pki.admin_crt),
                    "client-key": str(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "ringkv-e2e", "context": {"cluster": "ringkv-e2e", "user": "admin"}}],
        "current-context": "ringkv-e2e",
    }
    path.write_text(json.dumps(config, indent=1))
    return path


@dataclass(frozen=True, slots=True)
class ServingCert:
    """A CA and a certificate it signed, as PEM bytes (the three keys of a kubernetes.io/tls
    Secret as cert-manager writes it)."""

    ca_crt: bytes
    tls_crt: bytes
    tls_key: bytes

    def secret(self, name: str) -> dict[str, object]:
        """A ``kubernetes.io/tls`` Secret object holding it."""
        data = {"ca.crt": self.ca_crt, "tls.crt": self.tls_crt, "tls.key": self.tls_key}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name},
            "stringData": {k: v.decode() for k, v in data.items()},
        }


def serving_cert(directory: Path, *, dns_names: list[str], ca_name: str = "ringkv-tls-ca",
                 days: int = 30, reuse_ca: bool = False) -> ServingCert:  # fmt: skip
    """A fresh EC CA under ``directory`` (``reuse_ca``: the one already there, as a renewal
    by cert-manager keeps its issuer) and a new key and certificate it signs for ``dns_names``
    (SANs), a serving certificate (serverAuth; clientAuth too, harmless) as a node needs."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    if not reuse_ca:
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-subj", f"/CN={ca_name}",
                 "-days", str(days), "-out", "ca.crt", cwd=directory)  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", "tls.key", "-subj", f"/CN={dns_names[0]}",
             "-out", "tls.csr", cwd=directory)  # fmt: skip
    sans = ",".join(f"DNS:{d}" for d in dns_names)
    (directory / "tls.ext").write_text(
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n"
    )
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", str(days), "-extfile", "tls.ext", "-out", "tls.crt",
             cwd=directory)  # fmt: skip
    return ServingCert(
        ca_crt=(directory / "ca.crt").read_bytes(),
        tls_crt=(directory / "tls.crt").read_bytes(),
        tls_key=(directory / "tls.key").read_bytes(),
    )
