"""The Kubeflow pipeline (pipelines/kfp_pipeline.py): compiled and checked against the one pipeline
definition, and run end to end on a tiny batch with kfp.local (no cluster).

Needs the Kubeflow venv (kfp pins kubernetes<31; the Airflow provider needs >=32): `make test-kfp`,
which `make test` runs after the main suite. In the main venv these tests are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

kfp = pytest.importorskip("kfp", reason="the Kubeflow venv runs these: make test-kfp")

from pipelines.kfp_pipeline import build_pipeline, compile_pipeline, run_local  # noqa: E402
from tests.conftest import TINY_STREAM_PARAMS  # noqa: E402
from tests.runners.airflow_helpers import ROOT  # noqa: E402
from vidcil.config import Params  # noqa: E402
from vidcil.pipeline.spec import PIPELINE  # noqa: E402


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "vidcil-batch.yaml"
    done = subprocess.run([sys.executable, "-m", "pipelines.kfp_pipeline", "compile", "--params",
                           str(ROOT / "params.yaml"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec, component="root"):
    dag = spec["root"]["dag"] if component == "root" else spec["components"][component]["dag"]
    return dag["tasks"]


def test_the_step_graph_is_the_shared_definition(compiled):
    spec, _ = compiled
    root = _tasks(spec)
    names = [s.name.replace("_", "-") for s in PIPELINE.steps]
    assert set(root) == set(names) | {"condition-branches-1"}
    for before, after in zip(names, names[1:]):  # one after another, in the spec's order
        assert root[after]["dependentTasks"] == [before]
    assert "dependentTasks" not in root[names[0]]
    # The branch: after gates, on its `passed` field (output "condition"); promote if true, else hold.
    branches = root["condition-branches-1"]
    assert branches["dependentTasks"] == [PIPELINE.branch.after]
    assert branches["inputs"]["parameters"]["pipelinechannel--gates-condition"]["taskOutputParameter"] == {
        "outputParameterKey": "condition", "producerTask": "gates"}
    arms = {}
    for task in _tasks(spec, "comp-condition-branches-1").values():
        (inner,) = _tasks(spec, task["componentRef"]["name"]).values()
        arms[task["triggerPolicy"]["condition"]] = inner["taskInfo"]["name"]
    assert arms == {"inputs.parameter_values['pipelinechannel--gates-condition'] == true": "promote",
                    "!(inputs.parameter_values['pipelinechannel--gates-condition'] == true)": "hold"}
    # Every step is a container on the project's image running its component; no step is cached.
    image = Params.load(ROOT / "params.yaml", plugins=False).orchestration.kubernetes.image
    executors = spec["deploymentSpec"]["executors"]
    for step in PIPELINE.all_steps:
        container = executors[f"exec-{step.replace('_', '-')}"]["container"]
        assert container["image"] == image and container["command"] == ["python", "-m", f"components.{step}"]
    gates_args = executors["exec-gates"]["container"]["args"]
    assert gates_args[-2] == "--output-field" and json.loads(gates_args[-1]) == {  # a KFP concat placeholder
        "Concat": ["passed=", "{{$.outputs.parameters['condition'].output_file}}"]}
    every = [t for c in ["root", "comp-condition-2", "comp-condition-3"] for t in _tasks(spec, c).values()
             if "componentRef" in t and not t["componentRef"]["name"].startswith("comp-condition")]
    assert len(every) == len(PIPELINE.all_steps)
    assert all(t["cachingOptions"] == {} for t in every)  # {}: enableCache false


def test_only_distil_asks_for_a_gpu_on_the_gpu_pool_with_shm_claim_and_secrets_by_reference(compiled):
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    gpu = {name for name, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert gpu == {"exec-distil"}
    accelerator = executors["exec-distil"]["container"]["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
    distil = platform["exec-distil"]
    assert distil["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert distil["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "tolerations" not in platform["exec-validate"] and "nodeSelector" not in platform["exec-validate"]
    assert int(distil["activeDeadlineSeconds"]) == 360 * 60
    for name, e in platform.items():
        mounts = {m["mountPath"]: m for m in e["emptyDirMounts"]}
        assert mounts["/dev/shm"]["medium"] == "Memory"
        assert e["pvcMount"][0]["mountPath"] == "/vidcil" and e["pvcMount"][0]["constant"] == "vidcil-store"
        assert {s["secretName"] for s in e["secretAsEnv"]} == {"vidcil-s3", "vidcil-mlflow"}
        assert e["securityContext"] == {"runAsUser": "1000", "runAsGroup": "1000", "runAsNonRoot": True}
        env = {v["name"]: v["value"] for v in executors[name]["container"]["env"]}
        secret_keys = {k["envVar"] for s in e["secretAsEnv"] for k in s["keyToEnv"]}
        assert not secret_keys & set(env)  # credentials only by reference, never literal
    assert "retryPolicy" not in _tasks(spec)["validate"]  # a rejection is a verdict: no retry


def test_the_local_pipeline_has_the_same_graph(tmp_path):
    params = Params.load(ROOT / "params.yaml", plugins=False)
    local, cluster = tmp_path / "local.yaml", tmp_path / "cluster.yaml"
    kfp.compiler.Compiler().compile(build_pipeline(params, local=True), str(local))
    compile_pipeline(params, cluster)

    def graph(path):
        spec = next(yaml.safe_load_all(path.read_text()))
        return {name: t.get("dependentTasks") for name, t in spec["root"]["dag"]["tasks"].items()}

    assert graph(local) == graph(cluster)


def test_several_gpus_run_distil_under_torchrun(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["orchestration"]["kubernetes"]["gpus"] = 2
    params = Params.model_validate(data)
    spec = next(yaml.safe_load_all(compile_pipeline(params, tmp_path / "two.yaml").read_text()))
    executors = spec["deploymentSpec"]["executors"]
    distil = executors["exec-distil"]["container"]
    assert distil["command"] == ["torchrun", "--standalone", "--nproc-per-node=2", "-m", "components.distil"]
    assert distil["resources"]["accelerator"]["resourceCount"] == "2"
    assert executors["exec-evaluate"]["container"]["command"] == ["python", "-m", "components.evaluate"]


@pytest.mark.e2e
def test_kfp_local_runs_a_batch_end_to_end_and_the_registry_shows_the_promoted_version(tmp_path):
    import mlflow

    project = tmp_path / "project"
    project.mkdir()
    params = {k: dict(v) for k, v in TINY_STREAM_PARAMS.items()} | {"versioning": {"dvc": False}}
    params["benchmark"] |= {"class_batches": 1}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([sys.executable, "-m", "vidcil.cli", "generate"], cwd=project, check=True, capture_output=True)

    run_local(project / "params.yaml", "b000", project)

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("vidcil-video-classifier", "champion")
    assert champion.tags["vidcil.batch_id"] == "b000" and champion.tags["vidcil.decision"] == "promoted"
    assert json.loads((project / "runs/b000/promote.json").read_text())["decision"] == "promoted"
    assert not (project / "runs/b000/hold.json").exists()  # the other arm of dsl.If did not run
    (gates_out,) = (project / "kfp-local").glob("*/gates/condition")
    assert gates_out.read_text() == "true"
