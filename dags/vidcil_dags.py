"""Airflow 3: a DAG run for every incoming batch.

- ``vidcil_landing_watcher`` lists the landing zone (a folder or an S3 prefix) every few minutes and
  emits one event on the asset ``vidcil_incoming_batches`` per new complete batch, carrying its id.
- ``vidcil_batch`` is scheduled on that asset (``max_active_runs=1``: batch k needs the champion
  of batch k-1). A run takes the oldest announced batch that is still pending (events that fold
  into one run are not lost: each run takes the next pending batch and announces the rest again),
  runs one task per step of the pipeline spec (``vidcil.pipeline.spec.PIPELINE``; each calls the
  step; no step logic here), branches on the gates as the spec says (promote / hold), and is
  idempotent per batch id. ``distil`` runs in the worker or as a
  GPU Kubernetes pod: ``orchestration.distil_on`` in params.yaml, or ``VIDCIL_DISTIL_ON``.

Settings: ``VIDCIL_PROJECT_DIR`` (the checkout with params.yaml; default: this folder's parent) and
``VIDCIL_PARAMS``; everything else is in params.yaml (``orchestration``), S3 and MLflow credentials
in the workers' environment or Kubernetes Secrets.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from vidcil.config import Params
from vidcil.pipeline.spec import PIPELINE, Step

PROJECT_DIR = Path(os.environ.get("VIDCIL_PROJECT_DIR", Path(__file__).resolve().parent.parent))
PARAMS_FILE = Path(os.environ.get("VIDCIL_PARAMS", PROJECT_DIR / "params.yaml"))
PARAMS = Params.load(PARAMS_FILE, plugins=False)  # parsing imports neither torch nor MLflow
LANDING_URI = PARAMS.orchestration.landing_uri or str((PROJECT_DIR / PARAMS.paths.landing).resolve())
DISTIL_ON = os.environ.get("VIDCIL_DISTIL_ON", PARAMS.orchestration.distil_on)
INCOMING = Asset(name="vidcil_incoming_batches",
                 uri=LANDING_URI if LANDING_URI.startswith("s3://") else f"file://{LANDING_URI}")
START = pendulum.datetime(2026, 1, 1, tz="UTC")
DEFAULT_ARGS = {
    "owner": "vidcil",
    "retries": PARAMS.orchestration.retries,  # transient failures: storage, MLflow, a preempted pod
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def run_component(step: str, batch_id: str) -> dict:
    """Run one pipeline step in this worker; XCom gets the small scalars and where the output is."""
    os.chdir(PROJECT_DIR)  # params.yaml paths are relative to the project
    from vidcil.io.contract import BatchRejected, BatchSetAside
    from vidcil.pipeline.runner import run_step

    try:
        out = run_step(Params.load(PARAMS_FILE), step, batch_id)  # options typed here, at run time
    except BatchRejected as e:  # a verdict, not a transient failure: no retry, reason in the UI
        raise AirflowFailException(f"batch {batch_id} rejected: {e}") from e
    except BatchSetAside as e:  # retired, or failed orchestration.max_attempts times: no retry; the stream goes on
        raise AirflowFailException(str(e)) from e
    small = {k: v for k, v in out.items() if v is None or isinstance(v, (str, int, float, bool))}
    return small | {"output": str(PROJECT_DIR / PARAMS.paths.runs / batch_id / f"{step}.json")}


def _status(batch_id: str) -> str:
    os.chdir(PROJECT_DIR)
    from vidcil.io import mlflow_registry
    from vidcil.pipeline.state import batch_status

    params = Params.load(PARAMS_FILE, plugins=False)
    mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location)
    return batch_status(params, batch_id)


def _set_aside_reason(batch_id: str) -> str:
    from vidcil.io.store import Store

    gone = Store(PROJECT_DIR / PARAMS.paths.store).retirement(batch_id) or {}
    return gone.get("reason", "no reason recorded")


def _announced(context) -> list[str]:
    """Every batch id ever announced on the asset (its events' history)."""
    return sorted({e.extra["batch_id"] for e in context["inlet_events"][INCOMING] if e.extra.get("batch_id")})


@dag(
    dag_id="vidcil_landing_watcher",
    schedule=timedelta(minutes=PARAMS.orchestration.watch_every_minutes),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["vidcil"],
    doc_md="Lists the landing zone; one `vidcil_incoming_batches` event per new complete batch.",
)
def vidcil_landing_watcher():
    @task(inlets=[INCOMING])
    def find_new_batches() -> list[str]:
        from vidcil.io.landing import LandingZone

        announced = set(_announced(get_current_context()))
        o = PARAMS.orchestration
        zone = LandingZone(LANDING_URI, retries=o.s3_retries, timeout_s=o.s3_timeout_s)
        return [b for b in zone.complete_batches() if b not in announced]

    @task(outlets=[INCOMING], map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def announce(batch_id: str) -> str:
        get_current_context()["outlet_events"][INCOMING].extra = {"batch_id": batch_id, "landing": LANDING_URI}
        return batch_id

    announce.expand(batch_id=find_new_batches())


def pod_operator(step: Step, batch_id: str):
    """The step as a Kubernetes pod (``vidcil.pipeline.pod.step_pod``: the spec every runner shares):
    a GPU node when the step asks for one, in-memory ``/dev/shm``, the project's ReadWriteMany claim,
    Secrets by reference (``envFrom``), never literal values; XCom empty (the output is
    ``runs/<batch>/<step>.json`` on the claim). ``batch_id`` may be a Jinja template.
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    from vidcil.pipeline.pod import step_pod

    cfg = PARAMS.orchestration.kubernetes
    pod = step_pod(cfg, step, batch_id)
    volumes = [k8s.V1Volume(name=v.name, persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                   claim_name=v.claim)) if v.claim else
               k8s.V1Volume(name=v.name, empty_dir=k8s.V1EmptyDirVolumeSource(medium=v.medium, size_limit=v.size_limit))
               for v in pod.volumes]
    return KubernetesPodOperator(
        task_id=step.name,
        name=pod.name,
        random_name_suffix=True,
        namespace=pod.namespace,
        kubernetes_conn_id=cfg.kubernetes_conn_id,
        image=pod.image,
        cmds=pod.command,
        arguments=pod.args,
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in pod.env.items()],
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=s)) for s in pod.secrets],
        security_context=pod.pod_security_context,  # Kubernetes JSON from the shared spec
        container_security_context=pod.container_security_context,
        container_resources=k8s.V1ResourceRequirements(requests=pod.requests, limits=pod.limits),
        node_selector=pod.node_selector,
        tolerations=[k8s.V1Toleration(**t) for t in pod.tolerations],
        volumes=volumes,
        volume_mounts=[k8s.V1VolumeMount(name=v.name, mount_path=v.mount_path) for v in pod.volumes],
        service_account_name=pod.service_account,
        labels=pod.labels,
        schedule_timeout_seconds=pod.schedule_timeout_seconds,  # GPU nodes that autoscale from zero
        startup_timeout_seconds=pod.startup_timeout_seconds,  # pulling a large CUDA image
        active_deadline_seconds=pod.active_deadline_seconds,
        # Waits in the triggerer, not a worker slot: a multi-hour GPU job holds no worker.
        deferrable=PARAMS.orchestration.kubernetes.deferrable,
        on_finish_action="delete_pod",
        reattach_on_restart=True,
        get_logs=True,
        do_xcom_push=False,
        execution_timeout=timedelta(seconds=pod.schedule_timeout_seconds + pod.active_deadline_seconds),
    )


def _on_kubernetes(step: Step) -> bool:
    return step.resources.gpu and DISTIL_ON == "kubernetes"


@dag(
    dag_id="vidcil_batch",
    schedule=[INCOMING],
    start_date=START,
    catchup=False,
    max_active_runs=1,  # batch k needs the champion of batch k-1
    default_args=DEFAULT_ARGS,
    params={"batch_id": Param(None, type=["null", "string"],
                              description="process this batch (manual runs); default: the oldest pending one")},
    tags=["vidcil"],
    doc_md=__doc__,
)
def vidcil_batch():
    @task(inlets=[INCOMING], retries=0)
    def pick_batch() -> str:
        """The oldest announced batch that is still pending (or the one asked for); else skip the run."""
        context = get_current_context()
        asked = context["params"].get("batch_id")
        candidates = [asked] if asked else _announced(context)
        status = {b: _status(b) for b in candidates}
        pending = [b for b in candidates if status[b] == "pending"]
        for b in candidates:  # set aside: said in this task's log, every run, until a corrected copy lands
            if status[b] in ("retired", "failed"):
                print(f"batch {b} is {status[b]}: {_set_aside_reason(b)}; the stream goes on without it")
        if not pending:
            raise AirflowSkipException("nothing pending among " + (
                ", ".join(f"{b} ({status[b]})" for b in candidates) or "no announced batch"))
        print(f"processing {pending[0]}; still pending after it: {pending[1:]}")
        return pending[0]

    def step_task(step: str):
        return task(task_id=step)(lambda batch_id: run_component(step, batch_id))

    branch = PIPELINE.branch

    @task.branch
    def decide(output: dict) -> str:
        return branch.if_true.name if output[branch.on] else branch.if_false.name  # the task id

    @task(inlets=[INCOMING], outlets=[INCOMING], trigger_rule="all_done", retries=0)
    def continue_stream(batch_id: str) -> None:
        """Announce the next pending batch (events folded into this run), once this one is decided."""
        context = get_current_context()
        if context["params"].get("batch_id"):
            raise AirflowSkipException("a manual run processes only the batch it was given")
        status = _status(batch_id)
        if status == "pending":
            raise AirflowFailException(f"batch {batch_id} did not finish; see the failed task, fix, clear it")
        rest = [b for b in _announced(context) if b > batch_id and _status(b) == "pending"]
        if not rest:
            raise AirflowSkipException(f"{batch_id} {status}; nothing else pending")
        context["outlet_events"][INCOMING].extra = {"batch_id": rest[0], "landing": LANDING_URI,
                                                    "continued_from": batch_id}

    batch = pick_batch()
    previous = batch
    for step in PIPELINE.steps:
        if _on_kubernetes(step):
            current = pod_operator(step, "{{ ti.xcom_pull(task_ids='pick_batch') }}")
            previous >> current
        else:
            current = step_task(step.name)(batch)
            if previous is not batch:
                previous >> current
        previous = current
    chosen = decide(previous)
    chosen >> [step_task(branch.if_true.name)(batch), step_task(branch.if_false.name)(batch)] >> continue_stream(batch)


vidcil_landing_watcher()
vidcil_batch()
