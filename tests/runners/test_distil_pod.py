"""The distil task as a GPU pod: rendered with a dummy kubeconfig (never contacted), validated against
the Kubernetes schema, and checked for what a GPU node pool needs."""

from __future__ import annotations

import json
import sys

import kubernetes_validate
import pytest

from tests.runners.airflow_helpers import ROOT, airflow_env, make_project, run

DUMMY_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: not-a-secret}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: vidcil}}]
current-context: none
"""

RENDER = """
import json, types
from airflow.dag_processing.dagbag import DagBag
from kubernetes.client import ApiClient
op = DagBag(dag_folder=DAGS).dags["vidcil_batch"].get_task("distil")
op.render_template_fields({"ti": types.SimpleNamespace(xcom_pull=lambda task_ids: "b007")})
pod = op.build_pod_request_obj()
print("JSON" + json.dumps({"pod": ApiClient().sanitize_for_serialization(pod),
                           "on_finish_action": op.on_finish_action.value, "do_xcom_push": op.do_xcom_push, "deferrable": op.deferrable,
                           "schedule_timeout": op.schedule_timeout_seconds,
                           "startup_timeout": op.startup_timeout_seconds}))
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pod")
    make_project(tmp)
    (tmp / "kubeconfig").write_text(DUMMY_KUBECONFIG)
    env = airflow_env(tmp, tmp / "airflow", VIDCIL_DISTIL_ON="kubernetes", KUBECONFIG=str(tmp / "kubeconfig"))
    out = run([sys.executable, "-c", RENDER.replace("DAGS", repr(str(ROOT / "dags")))], tmp, env)
    return json.loads(out[out.index("JSON") + 4:])


def test_rendered_pod_is_a_valid_kubernetes_pod(rendered):
    pod = rendered["pod"]
    kubernetes_validate.validate(pod, "1.33.0", strict=True)  # raises on any schema violation
    assert pod["kind"] == "Pod" and pod["metadata"]["namespace"] == "vidcil"


def test_pod_asks_for_a_gpu_node_and_runs_the_component(rendered):
    spec = rendered["pod"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "components.distil"]
    assert container["args"] == ["b007", "--params", "/vidcil/params.yaml", "--project-dir", "/vidcil"]
    assert container["image"] == "ghcr.io/vidcil/trainer:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["restartPolicy"] == "Never"


def test_pod_has_in_memory_shm_the_project_claim_and_secrets_by_reference(rendered):
    spec = rendered["pod"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert volumes["project"]["persistentVolumeClaim"] == {"claimName": "vidcil-store"}
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm" and mounts["/vidcil"] == "project"
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == ["vidcil-s3", "vidcil-mlflow"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"].startswith("http://")  # over HTTP to the server
    # No credential is a literal: every literal env value is a URL, a path or a flag.
    assert not any(k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") or "PASSWORD" in k or "TOKEN" in k
                   for k in env)
    assert env["AWS_ENDPOINT_URL"]["value"].startswith("http://")


def test_pod_runs_restricted_with_a_writable_tmp_and_is_deferrable(rendered):
    spec = rendered["pod"]["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                       "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/dev/shm"}
    assert spec["serviceAccountName"] == "vidcil-step"  # no API rights (infra/k8s/rbac.yaml)
    assert spec["activeDeadlineSeconds"] == 360 * 60
    assert rendered["deferrable"] is True


def test_pod_is_deleted_when_done_and_waits_for_autoscaled_gpu_nodes(rendered):
    assert rendered["on_finish_action"] == "delete_pod"
    assert rendered["do_xcom_push"] is False
    assert rendered["schedule_timeout"] >= 900 and rendered["startup_timeout"] >= 600
