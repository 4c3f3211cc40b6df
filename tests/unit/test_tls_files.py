"""The node's TLS files: errors that name the file, and reload without a restart.

Real certificates (``kvnode.localtls``), real ``ssl`` contexts; the reload is checked on real
handshakes in ``tests/integration/test_tls.py``.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest
from kvnode import localtls
from kvnode.auth import tlsfiles
from kvnode.raft import compat
from kvnode.settings import NodeSettings


def write_pair(where: Path, ca: localtls.Pem, *, name: str = "node-0") -> tlsfiles.TlsPaths:
    pem = localtls.issue(ca, name=name, hosts=["127.0.0.1", "localhost"])
    (where / "tls.crt").write_bytes(pem.cert)
    (where / "tls.key").write_bytes(pem.key)
    (where / "ca.crt").write_bytes(ca.cert)
    return tlsfiles.TlsPaths(
        cert_file=str(where / "tls.crt"),
        key_file=str(where / "tls.key"),
        ca_file=str(where / "ca.crt"),
    )


def serial(context: ssl.SSLContext) -> int:
    """The serial number of the certificate a server context presents (via a handshake in
    memory against a client trusting anything, so it works for any context)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    srv = context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (cli, srv):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = cli.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def test_contexts_are_tls12_plus_and_verifying(tmp_path: Path) -> None:
    paths = write_pair(tmp_path, localtls.make_ca())
    tls = tlsfiles.ReloadingTls(paths)
    assert tls.listening.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.current_server().minimum_version == ssl.TLSVersion.TLSv1_2
    client = tls.client_context()
    assert client.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname
    assert tls.listening.sni_callback is not None


@pytest.mark.parametrize(
    ("broken", "named"),
    [("tls.crt", "certificate file"), ("tls.key", "key file"), ("ca.crt", "CA file")],
)
def test_bad_file_at_start_is_an_error_naming_it(tmp_path: Path, broken: str, named: str) -> None:
    paths = write_pair(tmp_path, localtls.make_ca())
    (tmp_path / broken).write_text("not a pem\n")
    with pytest.raises(tlsfiles.TlsConfigError, match=named) as info:
        tlsfiles.ReloadingTls(paths)
    assert str(tmp_path / broken) in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    paths = write_pair(tmp_path, localtls.make_ca())
    (tmp_path / "tls.key").unlink()
    with pytest.raises(tlsfiles.TlsConfigError, match=r"key file .*tls.key is unreadable"):
        tlsfiles.ReloadingTls(paths)


def test_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    ca = localtls.make_ca()
    paths = write_pair(tmp_path, ca)
    (tmp_path / "tls.key").write_bytes(localtls.issue(ca, name="x", hosts=["x"]).key)
    with pytest.raises(tlsfiles.TlsConfigError, match=r"tls\.key is not a valid PEM private key"):
        tlsfiles.ReloadingTls(paths)


def test_changed_files_are_used_after_the_interval_and_a_bad_change_is_ignored(
    tmp_path: Path,
) -> None:
    now = [0.0]
    ca = localtls.make_ca()
    paths = write_pair(tmp_path, ca)
    tls = tlsfiles.ReloadingTls(paths, interval_s=10.0, clock=lambda: now[0])
    first = serial(tls.current_server())
    write_pair(tmp_path, ca)  # a new certificate and key
    assert serial(tls.current_server()) == first  # not checked before the interval
    now[0] = 11.0
    second = serial(tls.current_server())
    assert second != first
    assert tls.reloads == 1
    # a half-done rotation (new certificate, old key) keeps the working pair
    (tmp_path / "tls.crt").write_bytes(localtls.issue(ca, name="y", hosts=["y"]).cert)
    now[0] = 22.0
    assert serial(tls.current_server()) == second
    assert tls.reloads == 1
    assert tls.client_context() is not None


def test_partial_tls_settings_are_a_problem_all_or_none_are_fine() -> None:
    base = NodeSettings(node_id="n", data_dir="/tmp/x")
    assert base.tls_problem() is None
    full = NodeSettings(
        node_id="n", data_dir="/tmp/x", tls_cert_file="c", tls_key_file="k", tls_ca_file="a"
    )
    assert full.tls_problem() is None
    partial = NodeSettings(node_id="n", data_dir="/tmp/x", tls_cert_file="c")
    problem = partial.tls_problem()
    assert problem is not None
    assert "KVNODE_TLS_KEY_FILE" in problem
    assert "KVNODE_TLS_CA_FILE" in problem


def test_raft_key_derivation_happens_once_per_password() -> None:
    """PBKDF2 (~20 ms) must not run in every group's constructor on the ticker thread."""
    from pysyncobj import syncobj as pso_syncobj

    first = pso_syncobj.getEncryptor("pw-a")
    assert pso_syncobj.getEncryptor("pw-a") is first
    assert pso_syncobj.getEncryptor("pw-b") is not first
    token = first.encrypt(b"entry")
    assert compat._original_get_encryptor("pw-a").decrypt(token) == b"entry"
