"""The operator's side of backups: the KVClusterBackup decision table, the Job and claim
builders, the restore bootstrap action, and the backup loop against an in-memory Kubernetes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kvoperator import decide as d
from kvoperator import manifests
from kvoperator.decide import backup as pb
from kvoperator.model import backup as b
from kvoperator.reconcile.backup import BackupReconciler, run_restore

from tests.unit.operator.builders import NAMES, cluster_map, observed, spec
from tests.unit.operator.fakes import FakeKube

ROOT = Path(__file__).resolve().parents[2]
BNAMES = b.BackupNames("nightly", "ns")
RESULT = {
    "dir": "/backup/data", "partitions": 2, "keys": 10, "size_bytes": 999,
    "indexes": {"0": 17, "1": 21}, "seconds": 0.4, "verified": True,
}  # fmt: skip


def kvcluster(*, bootstrapped: bool = True, replicas: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {"image": "ringkv:test", "replicas": replicas},
        "status": {"bootstrapped": bootstrapped, "replicas": replicas},
    }


def decide(previous=None, cluster=None, job=None) -> pb.BackupDecision:
    return pb.decide_backup(
        b.BackupSpec(cluster="demo"), BNAMES, previous=previous or {}, cluster=cluster,
        job=job, now="2026-12-01T08:00:00Z",
    )  # fmt: skip


def test_the_job_runs_the_operators_default_image_when_the_cluster_names_none():
    cluster = kvcluster()
    del cluster["spec"]["image"]
    out = pb.decide_backup(
        b.BackupSpec(cluster="demo"), BNAMES, previous={}, cluster=cluster, job=None,
        now="t", default_image="ringkv/ringkv:9",
    )  # fmt: skip
    job = out.actions[1]
    assert isinstance(job, pb.CreateBackupJob)
    assert job.image == "ringkv/ringkv:9"


def test_pending_until_the_cluster_exists_and_is_bootstrapped():
    out = decide(cluster=None)
    assert (out.actions, out.status.phase) == ((), b.BackupPhase.PENDING)
    assert "not found" in out.status.message
    out = decide(cluster=kvcluster(bootstrapped=False))
    assert out.actions == ()
    assert "bootstrapped" in out.status.message


def test_starts_the_volume_and_a_job_against_every_node():
    out = decide(cluster=kvcluster(replicas=4))
    vol, job = out.actions
    assert isinstance(vol, pb.CreateBackupVolume)
    assert job == pb.CreateBackupJob(
        image="ringkv:test",
        endpoints=tuple(f"http://demo-{i}.demo-peers.ns.svc.cluster.local:7000" for i in range(4)),
    )
    assert out.status.phase is b.BackupPhase.RUNNING
    assert out.status.started_at == "2026-12-01T08:00:00Z"
    assert out.event == pb.Event("BackupStarted", out.status.message)


def test_running_then_completed_with_the_printed_result():
    started = {"phase": "Running", "startedAt": "2026-12-01T07:59:00Z"}
    out = decide(started, kvcluster(), pb.JobView(pb.JobState.ACTIVE))
    assert (out.actions, out.status.phase, out.event) == ((), b.BackupPhase.RUNNING, None)
    log = "some warning\n" + json.dumps(RESULT) + "\n"
    out = decide(started, kvcluster(), pb.JobView(pb.JobState.SUCCEEDED, log))
    st = out.status.to_dict()
    assert st["phase"] == "Completed"
    assert st["startedAt"] == "2026-12-01T07:59:00Z"
    assert st["completedAt"] == "2026-12-01T08:00:00Z"
    assert (st["indexes"], st["keys"], st["sizeBytes"], st["verified"]) == (
        {"0": 17, "1": 21}, 10, 999, True,
    )  # fmt: skip
    assert out.event is not None
    assert out.event.reason == "BackupCompleted"


@pytest.mark.parametrize(
    ("state", "log", "words"),
    [
        (pb.JobState.FAILED, '{"code": "backup_failed", "message": "partition 3: ..."}', "failed"),
        (pb.JobState.SUCCEEDED, "no json here", "no verified result"),
        (pb.JobState.SUCCEEDED, json.dumps({**RESULT, "verified": False}), "no verified result"),
    ],
)
def test_failures_are_final_and_say_why(state, log, words):
    out = decide({"phase": "Running"}, kvcluster(), pb.JobView(state, log))
    assert out.status.phase is b.BackupPhase.FAILED
    assert words in out.status.message
    assert out.event is not None
    assert out.event.warning
    again = decide(out.status.to_dict(), kvcluster(), None)  # final: nothing is recreated
    assert again.actions == ()
    assert again.status.to_dict() == out.status.to_dict()


def test_a_completed_backup_is_never_redone():
    done = decide({"phase": "Running"}, kvcluster(),
                  pb.JobView(pb.JobState.SUCCEEDED, json.dumps(RESULT)))  # fmt: skip
    again = decide(done.status.to_dict(), kvcluster(), None)
    assert again.actions == ()
    assert again.status == done.status


def test_job_and_claim_builders():
    owner = manifests.Owner("nightly", "uid-b", kind=b.KIND)
    pvc = manifests.backup_volume(b.BackupSpec(cluster="demo", size="2Gi"), BNAMES, owner)
    assert pvc["metadata"]["name"] == "nightly-backup"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "KVClusterBackup"
    job = manifests.backup_job(
        BNAMES, owner, image="img", endpoints=("http://a:7000", "http://b:7000")
    )
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["ringkv", "--endpoints", "http://a:7000,http://b:7000", "backup",
                            "/backup/data"]  # fmt: skip
    assert pod["restartPolicy"] == "Never"
    assert pod["volumes"] == [
        {"name": "backup", "persistentVolumeClaim": {"claimName": "nightly-backup"}}
    ]
    pmap = cluster_map(range(3), partitions=2)
    owner = manifests.Owner("demo", "uid-c")
    rjob = manifests.restore_job(
        NAMES, owner, image="img", claim="nightly-backup", pmap_json=json.dumps(pmap.to_dict())
    )
    (rc,) = rjob["spec"]["template"]["spec"]["containers"]
    assert rc["command"] == ["ringkv", "restore", "/backup/data"]
    assert rc["volumeMounts"][0]["readOnly"] is True
    assert json.loads(rc["env"][0]["value"]) == pmap.to_dict()
    assert rjob["metadata"]["ownerReferences"][0]["kind"] == "KVCluster"
    assert "RINGKV_TOKEN" not in json.dumps(job) + json.dumps(rjob)  # auth off: no credential


def test_jobs_of_a_cluster_with_auth_get_the_cluster_credential_from_its_secret():
    ref = {"secretKeyRef": {"name": "demo-tokens", "key": "cluster-token"}}
    owner = manifests.Owner("nightly", "uid-b", kind="KVClusterBackup")
    job = manifests.backup_job(
        BNAMES, owner, image="img", endpoints=("http://a:7000",), auth_secret="demo-tokens"
    )
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["env"] == [{"name": "RINGKV_TOKEN", "valueFrom": ref}]
    rjob = manifests.restore_job(
        NAMES, manifests.Owner("demo", "uid-c"), image="img", claim="nightly-backup",
        pmap_json="{}", auth_secret="demo-tokens",
    )  # fmt: skip
    (rc,) = rjob["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in rc["env"]] == ["RINGKV_MAP", "RINGKV_TOKEN"]
    assert rc["env"][1]["valueFrom"] == ref


def test_a_backup_of_a_cluster_with_auth_asks_for_a_job_with_its_secret():
    cluster = {
        "metadata": {"name": "demo"},
        "spec": {"replicas": 3, "image": "img", "auth": {"secretName": "demo-tokens"}},
        "status": {"bootstrapped": True, "replicas": 3},
    }
    spec = b.parse_backup_spec({"cluster": "demo"})
    out = pb.decide_backup(spec, BNAMES, previous={}, cluster=cluster, job=None, now="t")
    (job,) = [a for a in out.actions if isinstance(a, pb.CreateBackupJob)]
    assert job.auth_secret == "demo-tokens"


def test_bootstrap_of_a_restored_cluster_runs_the_restore_instead_of_installing():
    out = d.decide(spec(partitions=8, restoreFrom={"backup": "nightly"}),
                   observed(sts=3, running=range(3)), NAMES, objects_current=True)  # fmt: skip
    (restore,) = [a for a in out.actions if isinstance(a, d.RestoreBackup)]
    assert not [a for a in out.actions if isinstance(a, d.InstallMap)]
    assert restore.backup == "nightly"
    assert restore.pmap.epoch == 1
    assert restore.pmap.partitions == 8
    assert "restoring backup nightly" in out.message


def test_the_crds_declare_the_backup_kind_and_restore_from():
    backup_crd = yaml.safe_load((ROOT / "crds" / "ringkv.io_kvclusterbackups.yaml").read_text())
    assert backup_crd["spec"]["names"]["kind"] == b.KIND
    assert backup_crd["spec"]["names"]["plural"] == b.PLURAL
    link = ROOT / "charts" / "ringkv" / "crds" / "ringkv.io_kvclusterbackups.yaml"
    assert link.is_symlink()
    kvc = yaml.safe_load((ROOT / "crds" / "ringkv.io_kvclusters.yaml").read_text())
    (v,) = kvc["spec"]["versions"]
    restore = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["restoreFrom"]
    assert restore["required"] == ["backup"]


class BackupKube(FakeKube):
    """The in-memory API plus what the backup loop reads: backups and Job states."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, pb.JobView] = {}

    async def get_backup(self, namespace: str, name: str):
        return copy.deepcopy(self.get("KVClusterBackup", namespace, name))

    async def patch_backup_status(self, namespace: str, name: str, status: dict) -> None:
        obj = self.objects[("KVClusterBackup", namespace, name)]
        obj["status"] = {**obj.get("status", {}), **status}

    async def job_view(self, namespace: str, name: str):
        if self.get("Job", namespace, name) is None:
            return None
        return self.jobs.get(name, pb.JobView(pb.JobState.ACTIVE))


def _backup_obj(status: dict | None = None) -> dict:
    return {
        "apiVersion": "ringkv.io/v1alpha1", "kind": "KVClusterBackup",
        "metadata": {"name": "nightly", "namespace": "ns", "uid": "uid-b"},
        "spec": {"cluster": "demo"}, "status": status or {},
    }  # fmt: skip


async def test_backup_loop_creates_then_reports_completion():
    kube = BackupKube()
    kube.objects[("KVClusterBackup", "ns", "nightly")] = _backup_obj()
    kube.create_cluster("demo", "ns", {"replicas": 3, "image": "ringkv:test"})
    rec = BackupReconciler(kube)
    assert await rec.reconcile_once("ns", "nightly")  # cluster not bootstrapped: pending
    assert kube.get("Job", "ns", "nightly-backup") is None
    kube.cluster()["status"] = {"bootstrapped": True, "replicas": 3}
    assert await rec.reconcile_once("ns", "nightly")
    assert kube.get("PersistentVolumeClaim", "ns", "nightly-backup") is not None
    assert kube.get("Job", "ns", "nightly-backup") is not None
    assert await rec.reconcile_once("ns", "nightly")  # running: nothing new
    kube.jobs["nightly-backup"] = pb.JobView(pb.JobState.SUCCEEDED, json.dumps(RESULT))
    assert not await rec.reconcile_once("ns", "nightly")
    status = kube.get("KVClusterBackup", "ns", "nightly")["status"]
    assert status["phase"] == "Completed"
    assert status["verified"] is True
    assert [r for _, r, _ in kube.events] == ["BackupStarted", "BackupCompleted"]
    assert not await rec.reconcile_once("ns", "nightly")
    assert len(kube.events) == 2


async def test_restore_waits_for_a_completed_backup_and_refuses_another_partition_count():
    kube = BackupKube()
    kube.objects[("KVClusterBackup", "ns", "nightly")] = _backup_obj({"phase": "Running"})
    body = {"apiVersion": "ringkv.io/v1alpha1", "kind": "KVCluster",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u"}}  # fmt: skip
    owner = manifests.Owner("demo", "u")
    pmap = cluster_map(range(3), partitions=2)
    args = dict(image="img", pmap=pmap, backup="nightly")
    await run_restore(kube, NAMES, owner, body, **args)
    assert kube.get("Job", "ns", "demo-restore") is None
    done = {"phase": "Completed", "partitions": 4, "volumeClaim": "nightly-backup"}
    kube.objects[("KVClusterBackup", "ns", "nightly")]["status"] = done
    await run_restore(kube, NAMES, owner, body, **args)
    assert kube.get("Job", "ns", "demo-restore") is None
    kube.objects[("KVClusterBackup", "ns", "nightly")]["status"]["partitions"] = 2
    await run_restore(kube, NAMES, owner, body, **args)
    assert kube.get("Job", "ns", "demo-restore") is not None
    kube.jobs["demo-restore"] = pb.JobView(pb.JobState.SUCCEEDED, "{}")
    await run_restore(kube, NAMES, owner, body, **args)
    reasons = [r for _, r, _ in kube.events]
    assert reasons == ["RestoreWaiting", "RestoreRefused", "RestoreStarted", "Restored"]
