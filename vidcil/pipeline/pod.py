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
    claim: str | None = None  # a PersistentVolumeClaim; None: an emptyDir
    size_limit: str | None = None
    medium: str | None = None  # an emptyDir's: "Memory" (tmpfs) or None (the node's disk)


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    secrets: dict[str, list[str]]  # Secret name -> its keys, each exposed as the env variable of that name
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
    user: int = 1000  # uid and gid of the image's user (infra/Dockerfile.trainer)
    extra: dict = field(default_factory=dict)

    @property
    def pod_security_context(self) -> dict:
        """Pod-level securityContext (Kubernetes JSON): non-root, the image's user, seccomp RuntimeDefault."""
        return {"runAsNonRoot": True, "runAsUser": self.user, "runAsGroup": self.user, "fsGroup": self.user,
                "seccompProfile": {"type": "RuntimeDefault"}}

    @property
    def container_security_context(self) -> dict:
        """Container-level securityContext: read-only root (``/tmp`` and ``/dev/shm`` are emptyDirs),
        no privilege escalation, every capability dropped (the restricted Pod Security Standard)."""
        return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _command(step: str, processes: int) -> list[str]:
    """One process, or one per GPU under torchrun (DDP; rank 0 writes the step's output)."""
    if processes > 1:
        return ["torchrun", "--standalone", f"--nproc-per-node={processes}", "-m", f"components.{step}"]
    return ["python", "-m", f"components.{step}"]


def step_pod(cfg: KubernetesParams, step: Step, batch_id: str) -> PodSpec:
    """``python -m components.<step> <batch>`` from the trainer image in the project folder on the
    claim; MLflow over HTTP. ``batch_id`` may be a runner's template (e.g. Jinja).

    A GPU step takes ``cfg``'s cpu and memory, its node pool and tolerations; any other step its
    spec's resources (:class:`vidcil.pipeline.spec.Resources`) on any node. With ``cfg.gpus`` > 1 the
    GPU step runs under ``torchrun``, one process per GPU.
    """
    gpu = {"nvidia.com/gpu": str(cfg.gpus)} if step.resources.gpu and cfg.gpus else {}
    cpu, memory = (cfg.cpu, cfg.memory) if step.resources.gpu else (step.resources.cpu, step.resources.memory)
    return PodSpec(
        name=f"vidcil-{step.name.replace('_', '-')}",
        namespace=cfg.namespace,
        image=cfg.image,
        command=_command(step.name, int(cfg.gpus) if gpu else 1),
        args=[batch_id, "--params", f"{cfg.project_dir}/params.yaml", "--project-dir", cfg.project_dir],
        # HOME and caches on the writable /tmp: the root filesystem is read-only.
        env={**cfg.env, "MLFLOW_TRACKING_URI": cfg.mlflow_tracking_uri, "PYTHONUNBUFFERED": "1",
             "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "TORCH_HOME": "/tmp/torch"},
        secrets={name: list(keys) for name, keys in cfg.secrets.items()},
        requests={"cpu": cpu, "memory": memory},
        limits={"memory": memory, **gpu},
        node_selector=dict(cfg.node_selector) if gpu else {},
        tolerations=[dict(t) for t in cfg.tolerations] if gpu else [],
        volumes=[Volume("dshm", "/dev/shm", size_limit=cfg.shm_size, medium="Memory"),
                 Volume("tmp", "/tmp", size_limit=cfg.tmp_size),
                 Volume("project", cfg.project_dir, claim=cfg.store_claim)],
        service_account=cfg.service_account,
        labels={"app.kubernetes.io/name": "vidcil", "app.kubernetes.io/component": step.name},
        schedule_timeout_seconds=cfg.schedule_timeout_seconds,
        startup_timeout_seconds=cfg.startup_timeout_seconds,
        active_deadline_seconds=step.resources.timeout_minutes * 60,
        user=cfg.run_as_user,
    )
