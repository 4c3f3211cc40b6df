"""Issue 12 (TLS) on the operator side: ``spec.tls`` parsing, the pod template that mounts the
TLS and Raft Secrets with HTTPS probes, the operator-made Raft password Secret, the CA read from
the TLS Secret (problems described, never a value), the per-cluster TLS context of the node
client, backup and restore Jobs that trust the CA, and the reconciler tying it together."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kvoperator import manifests
from kvoperator.decide import backup as pb
from kvoperator.model import backup as b
from kvoperator.model import tls as model_tls
from kvoperator.model.names import ClusterNames
from kvoperator.model.spec import SpecError, parse_spec
from kvoperator.nodes import HttpNodeApi

from tests.unit.operator.builders import NAMES
from tests.unit.operator.harness import Harness

OWNER = manifests.Owner(name="demo", uid="u-1")
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n"


def make_ca(directory: Path, cn: str) -> bytes:
    """A real self-signed CA certificate (PEM), made by openssl as the e2e PKI is."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(directory / f"{cn}.key"), "-subj", f"/CN={cn}", "-days", "2",
         "-out", str(directory / f"{cn}.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (directory / f"{cn}.crt").read_bytes()


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    d = tmp_path_factory.mktemp("cas")
    return make_ca(d, "ca-one"), make_ca(d, "ca-two")


def tls_secret(ca: bytes, **override: str | None) -> dict[str, Any]:
    data: dict[str, str | None] = {
        "tls.crt": ca.decode(),
        "tls.key": KEY_PEM,
        "ca.crt": ca.decode(),
    }
    data.update(override)
    enc = {k: base64.b64encode(v.encode()).decode() for k, v in data.items() if v is not None}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "demo-tls"}, "data": enc}  # fmt: skip


# -- spec ---------------------------------------------------------------------------------------
def test_spec_tls_is_parsed() -> None:
    spec = parse_spec({"tls": {"secretName": "demo-tls"}}, default_image="i")
    assert spec.tls is not None
    assert spec.tls.secret_name == "demo-tls"
    assert parse_spec({}, default_image="i").tls is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [({}, "spec.tls.secretName"), ({"secretName": ""}, "spec.tls.secretName"),
     ("demo-tls", "spec.tls: must be an object")],
)  # fmt: skip
def test_bad_spec_tls_is_named(raw: Any, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        parse_spec({"tls": raw}, default_image="i")


# -- pod template -------------------------------------------------------------------------------
def pod_of(spec_raw: dict[str, Any]) -> dict[str, Any]:
    spec = parse_spec(spec_raw, default_image="ringkv:test")
    sts = manifests.statefulset(spec, NAMES, OWNER, replicas=3)
    return dict(sts["spec"]["template"]["spec"])


def test_tls_and_raft_secrets_are_mounted_and_named_to_the_node() -> None:
    pod = pod_of({"tls": {"secretName": "demo-tls"}, "auth": {"secretName": "demo-auth"}})
    assert pod["volumes"] == [
        {"name": "auth", "secret": {"secretName": "demo-auth", "defaultMode": 0o444}},
        {"name": "tls", "secret": {"secretName": "demo-tls", "defaultMode": 0o444}},
        {"name": "raft", "secret": {"secretName": "demo-raft", "defaultMode": 0o444}},
    ]
    (c,) = pod["containers"]
    mounts = c["volumeMounts"]
    assert {"name": "tls", "mountPath": "/etc/ringkv/tls", "readOnly": True} in mounts
    assert {"name": "raft", "mountPath": "/etc/ringkv/raft", "readOnly": True} in mounts
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KVNODE_TLS_CERT_FILE"] == "/etc/ringkv/tls/tls.crt"
    assert env["KVNODE_TLS_KEY_FILE"] == "/etc/ringkv/tls/tls.key"
    assert env["KVNODE_TLS_CA_FILE"] == "/etc/ringkv/tls/ca.crt"
    assert env["KVNODE_RAFT_PASSWORD_FILE"] == "/etc/ringkv/raft/password"
    assert env["KVNODE_AUTH_TOKENS_FILE"] == "/etc/ringkv/auth/tokens.json"  # auth unchanged
    # The node serves nothing but HTTPS: the probes must speak it (unauthenticated, unverified).
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}


def test_no_tls_no_tls_volumes_env_or_https_and_a_different_config_hash() -> None:
    pod = pod_of({})
    assert "volumes" not in pod
    (c,) = pod["containers"]
    assert not [e for e in c["env"] if "TLS" in e["name"] or "RAFT_PASSWORD" in e["name"]]
    assert "scheme" not in c["readinessProbe"]["httpGet"]
    plain = parse_spec({}, default_image="i")
    secure = parse_spec({"tls": {"secretName": "demo-tls"}}, default_image="i")
    assert manifests.config_hash(plain, NAMES) != manifests.config_hash(secure, NAMES)


def test_the_raft_secret_is_owned_by_the_cluster() -> None:
    obj = manifests.raft_secret(NAMES, OWNER, "pw")
    assert obj["metadata"]["name"] == NAMES.raft_secret == f"{NAMES.name}-raft"
    assert obj["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert obj["stringData"] == {"password": "pw"}
    assert obj["metadata"]["labels"] == NAMES.object_labels  # garbage-collected, listed


def test_required_sans_cover_the_node_names_and_the_client_service() -> None:
    names = ClusterNames("demo", "prod")
    sans = model_tls.required_sans(names)
    assert sans == ("*.demo-peers.prod.svc.cluster.local", "demo.prod.svc.cluster.local",
                    "demo.prod.svc", "demo.prod", "demo")  # fmt: skip
    assert names.host(3).endswith(sans[0].removeprefix("*"))  # KVNODE_HOST is covered


# -- the TLS Secret -----------------------------------------------------------------------------
def test_the_ca_is_read_from_the_secret(cas: tuple[bytes, bytes]) -> None:
    one, _ = cas
    assert model_tls.ca_pem(tls_secret(one), name="demo-tls") == one


@pytest.mark.parametrize(
    ("override", "problem"),
    [({"ca.crt": None}, "lacks key\\(s\\) ca.crt"),
     ({"tls.key": None, "tls.crt": None}, "lacks key\\(s\\) tls.crt, tls.key"),
     ({"ca.crt": "hello"}, "holds no PEM certificate")],
)  # fmt: skip
def test_unusable_tls_secrets_are_described_without_their_values(
    cas: tuple[bytes, bytes], override: dict[str, str | None], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        model_tls.ca_pem(tls_secret(cas[0], **override), name="demo-tls")
    assert "not-a-real-key" not in str(info.value)
    with pytest.raises(ValueError, match="does not exist"):
        model_tls.ca_pem(None, name="demo-tls")
    bad = {"data": {"tls.crt": "eA==", "tls.key": "eA==", "ca.crt": "!!"}}
    with pytest.raises(ValueError, match="not valid base64"):
        model_tls.ca_pem(bad, name="demo-tls")


# -- the node client ----------------------------------------------------------------------------
async def test_the_node_client_uses_each_clusters_own_ca(cas: tuple[bytes, bytes]) -> None:
    one, two = cas
    api = HttpNodeApi()
    a, c = ClusterNames("a", "ns"), ClusterNames("c", "ns")
    api.use_tls(a.node_domain, one)
    ctx = api.tls_for(a.node(0).http_url)
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert [x["subject"] for x in ctx.get_ca_certs()] == [((("commonName", "ca-one"),),)]
    api.use_tls(a.node_domain, one)
    assert api.tls_for(a.node(1).http_url) is ctx  # same CA: same context, pooled connections
    assert api.tls_for(c.node(0).http_url) is None  # a plain cluster stays plain
    assert api.tls_for("http://a-peers.ns.svc.cluster.local.evil:7000") is None
    api.use_tls(a.node_domain, two)  # a renewed CA bundle: a new context trusting it
    renewed = api.tls_for(a.node(0).http_url)
    assert renewed is not None
    assert renewed is not ctx
    assert [x["subject"] for x in renewed.get_ca_certs()] == [((("commonName", "ca-two"),),)]
    with pytest.raises(ssl.SSLError):
        api.use_tls(c.node_domain, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
    api.use_tls(a.node_domain, None)
    assert api.tls_for(a.node(0).http_url) is None
    await api.close()


# -- backup and restore Jobs --------------------------------------------------------------------
def test_backup_of_a_tls_cluster_calls_https_endpoints_and_trusts_its_ca() -> None:
    cluster = {
        "metadata": {"name": "demo"},
        "spec": {"replicas": 3, "image": "img", "tls": {"secretName": "demo-tls"}},
        "status": {"bootstrapped": True, "replicas": 3},
    }
    spec = b.parse_backup_spec({"cluster": "demo"})
    names = b.BackupNames("nightly", "ns")
    out = pb.decide_backup(spec, names, previous={}, cluster=cluster, job=None, now="t")
    (action,) = [a for a in out.actions if isinstance(a, pb.CreateBackupJob)]
    assert action.tls_secret == "demo-tls"
    assert action.auth_secret is None
    assert action.endpoints[0] == "https://demo-0.demo-peers.ns.svc.cluster.local:7000"
    assert all(u.startswith("https://") for u in action.endpoints)
    owner = manifests.Owner("nightly", "uid-b", kind="KVClusterBackup")
    job = manifests.backup_job(names, owner, image="img", endpoints=action.endpoints,
                               tls_secret=action.tls_secret)  # fmt: skip
    assert_trusts_the_ca_only(job)
    rjob = manifests.restore_job(NAMES, OWNER, image="img", claim="nightly-backup",
                                 pmap_json="{}", tls_secret="demo-tls")  # fmt: skip
    assert_trusts_the_ca_only(rjob)
    plain = pb.decide_backup(spec, names, previous={}, cluster={**cluster, "spec": {"replicas": 3}},
                             job=None, now="t")  # fmt: skip
    (p,) = [a for a in plain.actions if isinstance(a, pb.CreateBackupJob)]
    assert p.tls_secret is None
    assert p.endpoints[0].startswith("http://")


def assert_trusts_the_ca_only(job: dict[str, Any]) -> None:
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    source = {"secretName": "demo-tls", "defaultMode": 0o444,
              "items": [{"key": "ca.crt", "path": "ca.crt"}]}  # fmt: skip
    tls_vol = {"name": "tls", "secret": source}
    assert tls_vol in pod["volumes"]  # the Job never sees the node's key
    assert {"name": "tls", "mountPath": "/etc/ringkv/tls", "readOnly": True} in c["volumeMounts"]
    assert {"name": "RINGKV_CACERT", "value": "/etc/ringkv/tls/ca.crt"} in c["env"]


# -- the reconciler -----------------------------------------------------------------------------
def raft_password(h: Harness) -> str:
    obj = h.kube.get("Secret", NAMES.namespace, NAMES.raft_secret)
    assert obj is not None
    return base64.b64decode(obj["data"]["password"]).decode()


async def test_reconciler_feeds_the_ca_and_makes_the_raft_secret_once(
    cas: tuple[bytes, bytes],
) -> None:
    one, two = cas
    h = Harness({"replicas": 3, "partitions": 4, "tls": {"secretName": "demo-tls"}})
    h.kube.objects[("Secret", NAMES.namespace, "demo-tls")] = tls_secret(one)
    await h.ready()
    assert h.nodes.tls == {NAMES.node_domain: one}
    raft = h.kube.get("Secret", NAMES.namespace, NAMES.raft_secret)
    assert raft is not None
    assert raft["metadata"]["ownerReferences"][0]["kind"] == "KVCluster"
    password = raft_password(h)
    assert len(password) >= 43  # secrets.token_urlsafe(32)
    assert h.kube.reasons().count("RaftSecretCreated") == 1
    for _ in range(3):
        await h.step()
    assert raft_password(h) == password  # never replaced
    h.kube.objects[("Secret", NAMES.namespace, "demo-tls")] = tls_secret(two)  # renewed CA
    await h.step()
    assert h.nodes.tls == {NAMES.node_domain: two}
    assert password not in json.dumps(h.kube.events) + json.dumps(h.status)
    sts = h.kube.get("StatefulSet", NAMES.namespace, NAMES.name)
    assert sts is not None
    vols = [v["secret"]["secretName"] for v in sts["spec"]["template"]["spec"]["volumes"]]
    assert vols == ["demo-tls", NAMES.raft_secret]


async def test_an_unusable_tls_secret_is_reported_and_nothing_is_created(
    cas: tuple[bytes, bytes],
) -> None:
    h = Harness({"replicas": 3, "partitions": 4, "tls": {"secretName": "demo-tls"}})
    for _ in range(3):
        await h.step()
    conds = {c["type"]: c for c in h.status["conditions"]}
    assert h.status["phase"] == "Degraded"
    assert conds["Degraded"]["reason"] == "TlsSecretUnusable"
    assert "does not exist" in conds["Degraded"]["message"]
    assert h.kube.names("StatefulSet") == []
    assert h.kube.names("Secret") == []
    h.kube.objects[("Secret", NAMES.namespace, "demo-tls")] = tls_secret(cas[0], **{"ca.crt": None})
    await h.step()
    conds = {c["type"]: c for c in h.status["conditions"]}
    assert "lacks key(s) ca.crt" in conds["Degraded"]["message"]
    assert h.kube.reasons().count("TlsSecretUnusable") == 2  # one Event per distinct problem
    h.kube.objects[("Secret", NAMES.namespace, "demo-tls")] = tls_secret(cas[0])
    await h.ready()
    assert h.nodes.tls == {NAMES.node_domain: cas[0]}


async def test_a_raft_secret_deleted_from_a_running_cluster_is_not_replaced(
    cas: tuple[bytes, bytes],
) -> None:
    h = Harness({"replicas": 3, "partitions": 4, "tls": {"secretName": "demo-tls"}})
    h.kube.objects[("Secret", NAMES.namespace, "demo-tls")] = tls_secret(cas[0])
    await h.ready()
    del h.kube.objects[("Secret", NAMES.namespace, NAMES.raft_secret)]
    await h.step()
    conds = {c["type"]: c for c in h.status["conditions"]}
    assert conds["Degraded"]["reason"] == "RaftSecretMissing"
    assert h.kube.get("Secret", NAMES.namespace, NAMES.raft_secret) is None


async def test_turning_tls_off_in_the_operator_forgets_the_ca(cas: tuple[bytes, bytes]) -> None:
    """The API server refuses the change (a CEL transition rule); a spec written around it
    (an older CRD) still never leaves a stale context behind."""
    h = Harness({"replicas": 3, "partitions": 4, "tls": {"secretName": "demo-tls"}})
    h.kube.objects[("Secret", NAMES.namespace, "demo-tls")] = tls_secret(cas[0])
    await h.ready()
    cluster = h.kube.cluster()
    del cluster["spec"]["tls"]
    cluster["metadata"]["generation"] += 1
    await h.step()
    assert h.nodes.tls == {}


def test_the_cert_manager_example_names_what_the_operator_needs() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "kvcluster-tls.yaml"
    docs = list(yaml.safe_load_all(example.read_text()))
    (kvc,) = [d for d in docs if d["kind"] == "KVCluster"]
    names = ClusterNames(kvc["metadata"]["name"], kvc["metadata"]["namespace"])
    spec = parse_spec(kvc["spec"], default_image="i")
    assert spec.tls is not None
    (cert,) = [d for d in docs if d["kind"] == "Certificate" and d["spec"].get("dnsNames")]
    assert cert["spec"]["secretName"] == spec.tls.secret_name
    assert tuple(cert["spec"]["dnsNames"]) == model_tls.required_sans(names)
    assert "server auth" in cert["spec"]["usages"]
