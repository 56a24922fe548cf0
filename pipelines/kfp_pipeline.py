"""Kubeflow Pipelines v2: the per-batch pipeline, built from the one definition
(:data:`vidcil.pipeline.spec.PIPELINE`) and the shared pod spec (:mod:`vidcil.pipeline.pod`).

    python -m pipelines.kfp_pipeline compile [--params params.yaml] [--out reports/kfp/vidcil-batch.yaml]
    python -m pipelines.kfp_pipeline run-local BATCH_ID --project-dir DIR   # kfp.local, no cluster

Each step is a container component on the project's image running ``python -m components.<step>``
(the command the Airflow pod runs): the project folder is the ReadWriteMany claim, Secrets come by
reference, the GPU step asks for an accelerator on the GPU node pool with an in-memory ``/dev/shm``
(with more than one GPU it runs under ``torchrun``, one process per GPU).
Steps run one after another as the spec orders them; after ``gates``, ``dsl.If`` on its ``passed``
output chooses ``promote`` or ``hold``.

Caching is off for every step: a step's inputs are the claim and the registry, which KFP's cache key
(the task's parameters) cannot see; each step is itself idempotent per batch id.

Locally (``run-local``, CI) the same graph runs under ``kfp.local``'s SubprocessRunner, which only runs
lightweight Python components: there each step is one that runs the very same command and
arguments in a subprocess. Kubernetes settings compile into the YAML and are ignored locally.

Needs its own environment (``make kfp-setup``: kfp pins ``kubernetes<31``, the Airflow provider
needs ``>=32``; ../shared/FACTS.md).
"""

import argparse
import copy
from pathlib import Path

from kfp import compiler, dsl, kubernetes

from vidcil.config import KubernetesParams, Params
from vidcil.pipeline.pod import PodSpec, step_pod
from vidcil.pipeline.spec import PIPELINE, Pipeline, Step

PIPELINE_NAME = "vidcil-batch"
CONDITION = "condition"  # the output parameter carrying the branch's field (spec: Branch.on)


def _args(batch_id, params_file, project_dir, output, field=None, condition=None) -> list:
    args = [batch_id, "--params", params_file, "--project-dir", project_dir, "--output-file", output]
    if field:
        args += ["--output-field", dsl.ConcatPlaceholder([f"{field}=", condition])]
    return args


def container_component(step: Step, image: str, command: list[str], field: str | None = None):
    """``command`` (``python -m components.<step>``, or torchrun) on ``image``; outputs ``output``
    (the step's JSON) and, for the step the branch reads, ``condition`` (its field ``field``)."""
    if field:
        def component(batch_id: str, params_file: str, project_dir: str,
                      output: dsl.OutputPath(str), condition: dsl.OutputPath(bool)):
            return dsl.ContainerSpec(image=image, command=command,
                                     args=_args(batch_id, params_file, project_dir, output, field, condition))
    else:
        def component(batch_id: str, params_file: str, project_dir: str, output: dsl.OutputPath(str)):
            return dsl.ContainerSpec(image=image, command=command,
                                     args=_args(batch_id, params_file, project_dir, output))
    component.__name__ = step.name
    component.__doc__ = f"vidcil step {step.name}: {step.function}"
    return dsl.container_component(component)


# Locally: the same command and arguments, in a subprocess of this environment.
@dsl.component(base_image="python:3.11-slim")  # runs only under kfp.local (see above)
def _local_step(step: str, batch_id: str, params_file: str, project_dir: str, output: dsl.OutputPath(str)):
    import subprocess
    import sys

    args = [batch_id, "--params", params_file, "--project-dir", project_dir, "--output-file", output]
    subprocess.run([sys.executable, "-m", f"components.{step}", *args], check=True)


@dsl.component(base_image="python:3.11-slim")  # runs only under kfp.local (see above)
def _local_branch_step(step: str, field: str, batch_id: str, params_file: str, project_dir: str,
                       output: dsl.OutputPath(str), condition: dsl.OutputPath(bool)):
    import subprocess
    import sys

    args = [batch_id, "--params", params_file, "--project-dir", project_dir, "--output-file", output,
            "--output-field", f"{field}={condition}"]
    subprocess.run([sys.executable, "-m", f"components.{step}", *args], check=True)


def local_component(step: Step, field: str | None = None):
    component = copy.deepcopy(_local_branch_step if field else _local_step)
    component.component_spec.name = step.name  # the task's name in the graph
    component.name = step.name
    return component


def _on_kubernetes(task, pod: PodSpec, retries: int) -> None:
    """The shared pod spec as KFP task settings (kfp-kubernetes)."""
    task.set_cpu_request(pod.requests["cpu"])
    task.set_memory_request(pod.requests["memory"])
    task.set_memory_limit(pod.limits["memory"])
    if "nvidia.com/gpu" in pod.limits:
        task.set_accelerator_type("nvidia.com/gpu")
        task.set_accelerator_limit(int(pod.limits["nvidia.com/gpu"]))
        for key, value in pod.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for t in pod.tolerations:
            kubernetes.add_toleration(task, key=t.get("key"), operator=t.get("operator", "Equal"),
                                      value=t.get("value"), effect=t.get("effect"))
    for name, value in pod.env.items():
        task.set_env_variable(name, value)
    for secret, keys in pod.secrets.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env={k: k for k in keys})
    for v in pod.volumes:
        if v.claim:
            kubernetes.mount_pvc(task, pvc_name=v.claim, mount_path=v.mount_path)
        else:
            kubernetes.empty_dir_mount(task, volume_name=v.name, mount_path=v.mount_path, medium=v.medium,
                                       size_limit=v.size_limit)
    kubernetes.set_security_context(task, run_as_user=pod.user, run_as_group=pod.user, run_as_non_root=True)
    kubernetes.set_timeout(task, pod.active_deadline_seconds)
    for key, value in pod.labels.items():
        kubernetes.add_pod_label(task, key, value)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2, backoff_max_duration="600s")


def build_pipeline(params: Params, local: bool = False, spec: Pipeline = PIPELINE):
    """The KFP pipeline function for ``spec``: parameters ``batch_id``, ``params_file``, ``project_dir``."""
    cfg: KubernetesParams = params.orchestration.kubernetes
    branch = spec.branch
    fields = {branch.after: branch.on}  # the step whose output field the branch reads

    def component(step: Step):
        field = fields.get(step.name)
        if local:
            return local_component(step, field)
        return container_component(step, cfg.image, step_pod(cfg, step, "").command, field)

    components = {name: component(s) for name, s in spec.all_steps.items()}

    def task(step: Step, after, batch_id, params_file, project_dir):
        extra = {"step": step.name} | ({"field": fields[step.name]} if step.name in fields else {})
        t = components[step.name](batch_id=batch_id, params_file=params_file, project_dir=project_dir,
                                  **(extra if local else {}))
        t.set_display_name(step.name)
        if after is not None:
            t.after(after)
        t.set_caching_options(False)
        if not local:  # kfp.local would apply env and retries here too: the cluster's settings stay there
            # A rejected batch is a verdict, not a transient failure: validate is not retried.
            _on_kubernetes(t, step_pod(cfg, step, "{batch_id}"),
                           0 if step.name == "validate" else params.orchestration.retries)
        return t

    @dsl.pipeline(name=PIPELINE_NAME, description="vidcil: one incoming batch of labelled videos, from "
                  "landing to promote or hold (vidcil.pipeline.spec.PIPELINE)")
    def vidcil_batch(batch_id: str, params_file: str = f"{cfg.project_dir}/params.yaml",
                     project_dir: str = cfg.project_dir):
        previous = None
        for step in spec.steps:
            previous = task(step, previous, batch_id, params_file, project_dir)
        with dsl.If(previous.outputs[CONDITION] == True, name="gates-passed"):  # noqa: E712 (a KFP expression)
            task(branch.if_true, previous, batch_id, params_file, project_dir)
        with dsl.Else(name="gates-failed"):
            task(branch.if_false, previous, batch_id, params_file, project_dir)

    return vidcil_batch


def compile_pipeline(params: Params, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params), package_path=str(out))
    return out


def run_local(params_file: Path, batch_id: str, project_dir: Path, pipeline_root: Path | None = None):
    """The pipeline on this machine with ``kfp.local`` (no cluster); returns the finished pipeline task."""
    from kfp import local

    project_dir = project_dir.resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(pipeline_root or project_dir / "kfp-local"), raise_on_error=True)
    pipeline = build_pipeline(Params.load(params_file, plugins=False), local=True)
    return pipeline(batch_id=batch_id, params_file=str(params_file.resolve()), project_dir=str(project_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.kfp_pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile to KFP v2 YAML (upload it in the KFP UI or with kfp.Client)")
    c.add_argument("--params", type=Path, default=Path("params.yaml"))
    c.add_argument("--out", type=Path, default=Path("reports/kfp/vidcil-batch.yaml"))
    r = sub.add_parser("run-local", help="run one batch here with kfp.local (no cluster)")
    r.add_argument("batch_id")
    r.add_argument("--project-dir", type=Path, default=Path("."))
    r.add_argument("--params", type=Path, help="default: PROJECT_DIR/params.yaml")
    args = parser.parse_args(argv)
    if args.command == "compile":
        if not args.params.is_file():
            parser.error(f"no params file {args.params}; pass --params")
        print(f"compiled {compile_pipeline(Params.load(args.params, plugins=False), args.out)}")
    else:
        params = args.params or args.project_dir / "params.yaml"
        if not params.is_file():
            parser.error(f"no params file {params}; pass --params or --project-dir")
        run_local(params, args.batch_id, args.project_dir)


if __name__ == "__main__":
    main()
