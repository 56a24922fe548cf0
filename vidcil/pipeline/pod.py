"""The pod a step runs in on Kubernetes, described once for every runner.

The Airflow DAG turns it into a ``KubernetesPodOperator``; the Kubeflow pipeline into kfp-kubernetes
settings. Plain data (no Kubernetes client here): image, command, the GPU and its node pool
(node selector, tolerations), an in-memory ``/dev/shm`` for DataLoader workers (the default is
64 MB), the project's ReadWriteMany claim, Secrets by reference (never values), timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vidcil.config import KubernetesParams
from vidcil.pipeline.spec import Step


@dataclass(frozen=True)
class Volume:
    name: str
    mount_path: str
    claim: str | None = None  # a PersistentVolumeClaim; None: an in-memory emptyDir
    size_limit: str | None = None


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    secrets: list[str]  # Secrets exposed as environment (envFrom), by name
    requests: dict[str, str]
    limits: dict[str, str]
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    volumes: list[Volume]
    service_account: str | None
    labels: dict[str, str]
    schedule_timeout_seconds: int  # waiting for a GPU node to scale up
    startup_timeout_seconds: int  # pulling a large CUDA image
    active_deadline_seconds: int  # the step's own time limit
    extra: dict = field(default_factory=dict)


def step_pod(cfg: KubernetesParams, step: Step, batch_id: str) -> PodSpec:
    """``python -m components.<step> <batch>`` from the trainer image in the project folder on the
    claim; MLflow over HTTP. ``batch_id`` may be a runner's template (e.g. Jinja)."""
    gpu = {"nvidia.com/gpu": str(cfg.gpus)} if step.resources.gpu and cfg.gpus else {}
    return PodSpec(
        name=f"vidcil-{step.name.replace('_', '-')}",
        namespace=cfg.namespace,
        image=cfg.image,
        command=["python", "-m", f"components.{step.name}"],
        args=[batch_id, "--params", f"{cfg.project_dir}/params.yaml"],
        env={"MLFLOW_TRACKING_URI": cfg.mlflow_tracking_uri, "PYTHONUNBUFFERED": "1"},
        secrets=list(cfg.secrets),
        requests={"cpu": cfg.cpu, "memory": cfg.memory},
        limits={"memory": cfg.memory, **gpu},
        node_selector=dict(cfg.node_selector) if gpu else {},
        tolerations=[dict(t) for t in cfg.tolerations] if gpu else [],
        volumes=[Volume("dshm", "/dev/shm", size_limit=cfg.shm_size),
                 Volume("project", cfg.project_dir, claim=cfg.store_claim)],
        service_account=cfg.service_account,
        labels={"app.kubernetes.io/name": "vidcil", "app.kubernetes.io/component": step.name},
        schedule_timeout_seconds=cfg.schedule_timeout_seconds,
        startup_timeout_seconds=cfg.startup_timeout_seconds,
        active_deadline_seconds=step.resources.timeout_minutes * 60,
    )
