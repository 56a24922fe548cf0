"""MLflow adapter: tracking location, model logging, registry look-ups and aliases.

A model is logged as an MLflow ``pyfunc`` "from code" (:mod:`vidcil.io.serving_model`) whose
artifacts are a ``state_dict`` and the JSON architecture config; it is loaded back with
``torch.load(weights_only=True)``, never by unpickling a Python object. Which batch is done, which version is champion and why a version was held
are all read from the registry (version tags and aliases): there is no second ledger.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from vidcil.io.contract import ServiceUnavailable, redact, sha256_file

if TYPE_CHECKING:  # torch is imported where a model is (the registry's look-ups and tags start without it)
    from vidcil.core.models.tsm import VideoRecognizer

CHAMPION, CHALLENGER = "champion", "challenger"
TAG = "vidcil."  # prefix of every tag this project writes
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # vidcil/, logged with the model as its code


_set_here: str | None = None  # the project URI configure() last set (MLflow exports it), not a user's


def configure(tracking_uri: str | None, experiment: str, artifact_location: str | None = None, *,
              retries: int = 2, timeout_s: int = 20) -> str:
    """Point MLflow at ``$MLFLOW_TRACKING_URI``, else ``tracking_uri``, else ``sqlite:///mlflow.db``.

    A new experiment keeps its artifacts at ``artifact_location`` (e.g. ``s3://bucket/prefix``; the
    endpoint from ``MLFLOW_S3_ENDPOINT_URL``), else, with a local SQLite store, in ``mlartifacts/``
    beside it (never ``./mlruns``); with a server and no location the server decides. Returns the
    tracking URI in use.

    A server is asked at most ``retries`` more times, ``timeout_s`` each (MLflow's own defaults, 7
    retries with back-off, take over 4 minutes to give up; ``$MLFLOW_HTTP_REQUEST_*`` still win), and
    one that does not answer raises :class:`~vidcil.io.contract.ServiceUnavailable` naming it.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
    global _set_here
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep logs readable
    # mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI itself (for subprocesses): a value this
    # function put there is not the user's, and must not pin a later project to the first one's store.
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != _set_here:
        uri, _set_here = env, None  # the user's
    else:
        uri = tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        _set_here = uri
    mlflow.set_tracking_uri(uri)
    try:
        found = mlflow.get_experiment_by_name(experiment)
    except Exception as e:  # connection refused, timeout, 5xx after the retries, a locked database
        if not uri.startswith(("http://", "https://")):
            raise
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        why = why.replace(uri, redact(uri))
        raise ServiceUnavailable(
            f"MLflow at {redact(uri)} did not answer ({why}); check that the server is running and reachable from "
            "here, and the URI (mlflow.tracking_uri or $MLFLOW_TRACKING_URI) and its credentials "
            "($MLFLOW_TRACKING_USERNAME / _PASSWORD); mlflow.retries / mlflow.timeout_s bound the wait") from None
    if found is None:
        location = artifact_location
        if location is None and uri.startswith("sqlite:///"):
            location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        # A training project, not a GenAI one: MLflow's UI reads this tag for the experiment's kind.
        mlflow.create_experiment(experiment, artifact_location=location,
                                 tags={"mlflow.experimentKind": "custom_model_development"})
    mlflow.set_experiment(experiment)
    return uri


def model_config(model: VideoRecognizer, class_names: list[str], dropout: float, shift_div: int,
                 input_size: int | None = None) -> dict:
    """The architecture as JSON; ``input_size``: the square frame side the model was trained at."""
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for {model.num_classes} outputs")
    return {
        "arch": model.arch, "num_segments": model.num_segments, "num_classes": model.num_classes,
        "shift_div": shift_div, "dropout": dropout, "class_names": list(class_names),
        "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(), "input_size": input_size,
        "head": model.head_config.model_dump(mode="json"), "input": model.input,
        "classifier": model.classifier_kind,
    }


def build_model(config: dict) -> VideoRecognizer:
    from vidcil.core.models.tsm import VideoRecognizer

    stats = {k: tuple(config[k]) for k in ("mean", "std") if config.get(k)}
    return VideoRecognizer(
        config["arch"], config["num_classes"], config["num_segments"], config["shift_div"], config["dropout"],
        head=config.get("head"), input=config.get("input", "rgb"),
        classifier=config.get("classifier", "linear"), **stats,
    )


def save_checkpoint(model: VideoRecognizer, config: dict, folder: Path) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "state_dict.pt")
    (folder / "config.json").write_text(json.dumps(config, indent=1))


def weights_digest(folder: Path) -> str:
    """sha256 of a checkpoint's weights file: what binds a registered version to what was evaluated."""
    return sha256_file(Path(folder) / "state_dict.pt")


def load_checkpoint(folder: Path) -> tuple[VideoRecognizer, dict]:
    """Rebuild a model from ``config.json`` + ``state_dict.pt`` (weights only, no pickle)."""
    import torch

    config = json.loads((Path(folder) / "config.json").read_text())
    model = build_model(config)
    model.load_state_dict(torch.load(Path(folder) / "state_dict.pt", map_location="cpu", weights_only=True))
    return model.eval(), config


class VideoClassifier(mlflow.pyfunc.PythonModel):
    """Serving wrapper: clips ``float32 [N, T, 3, H, W]`` in [0, 1] -> probabilities ``[N, K]``."""

    def load_context(self, context) -> None:
        self.model, self.config = load_checkpoint(Path(context.artifacts["checkpoint"]))

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, dict):  # named tensor input, as the signature declares
            model_input = model_input["clips"]
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            return torch.softmax(self.model(x), dim=1).numpy()


def log_model(checkpoint: Path, example: np.ndarray) -> str:
    """Log the checkpoint folder as a pyfunc model in the active run; returns its model URI."""
    import torch

    config = json.loads((checkpoint / "config.json").read_text())
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]), "clips")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, config["num_classes"]), "probabilities")]),
    )
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PACKAGE_ROOT / "io" / "serving_model.py"),  # from code: nothing pickled
        artifacts={"checkpoint": str(checkpoint)},
        signature=signature,
        input_example=example.astype(np.float32),
        code_paths=[str(PACKAGE_ROOT)],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                          f"numpy=={np.__version__}", "torchvision"],
    )
    return info.model_uri


def client() -> MlflowClient:
    return MlflowClient()


DISCARDED = "discarded"  # the decision of a stray version: registered for a batch, never what was evaluated


def version_for_batch(name: str, batch_id: str) -> ModelVersion | None:
    """The registered version trained on ``batch_id`` (not a discarded stray), if there is one."""
    try:
        found = client().search_model_versions(f"name = '{name}' and tags.`{TAG}batch_id` = '{batch_id}'")
    except MlflowException:
        return None  # no such registered model yet
    found = [v for v in found if v.tags.get(f"{TAG}decision") != DISCARDED]
    return max(found, key=lambda v: int(v.version)) if found else None


def close_orphaned_runs(experiment: str, project: str) -> list[str]:
    """This project's runs (tag ``vidcil.project``) of ``experiment`` left RUNNING by a killed vidcil
    process, closed as FAILED (with a tag saying why). Called by a runner that has just taken the
    project lock: no live writer of this project owns them (another project's runs, on a shared
    server, are not touched). A killed distil's run is resumed (RUNNING again) with its checkpoint."""
    c = client()
    found = c.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = c.search_runs([found.experiment_id], max_results=1000,
                         filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG}project` = '{project}'")
    closed = []
    for run in runs:
        c.set_tag(run.info.run_id, f"{TAG}closed", "left RUNNING by a process that was stopped; closed by the next run")
        c.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    return closed


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_version(name: str, version: ModelVersion | str) -> tuple[VideoRecognizer, dict]:
    """Download a registered version and rebuild it (``models:/<name>/<version>``)."""
    number = version.version if isinstance(version, ModelVersion) else version
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{number}", dst_path=tmp))
        checkpoint = next(p.parent for p in local.rglob("config.json"))
        return load_checkpoint(checkpoint)


def register(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    c = client()
    try:
        c.create_registered_model(
            name, description="vidcil: a video classifier kept current batch by batch (class-incremental)."
        )
    except MlflowException:
        pass  # exists already
    version = mlflow.register_model(model_uri, name, tags={f"{TAG}{k}": str(v) for k, v in tags.items()})
    return c.get_model_version(name, version.version)


def describe(name: str, version: str, description: str) -> None:
    """The one line the registry UI shows for a version."""
    client().update_model_version(name, version, description=description)


def metric_key(text: str) -> str:
    """``text`` (e.g. a class name) as part of an MLflow metric name (letters, digits, ``_ - . : /`` and spaces)."""
    key = re.sub(r"[^\w.\- :/]", "_", text).strip("/")
    return re.sub(r"/+", "/", key)[:200] or "_"


def set_tags(name: str, version: str, tags: dict[str, str]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_model_version_tag(name, version, f"{TAG}{k}", str(v))


def tag(version: ModelVersion, key: str, default: str | None = None) -> str | None:
    return version.tags.get(f"{TAG}{key}", default)
