"""Typed, validated configuration: ``params.yaml`` read once, at the edge.

The library functions take plain arguments; only steps and entrypoints read a :class:`Params`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, ValidationInfo,
    field_validator, model_validator,
)

from vidcil.core.distill import DISTILLERS
from vidcil.core.memory.frames import FRAME_POLICIES
from vidcil.core.memory.selection import SELECTIONS
from vidcil.core.models import ARCHS
from vidcil.core.models.heads import HEADS
from vidcil.core.registry import PluginConfig, Registry
from vidcil.core.weighting import LOSS_WEIGHTINGS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginChoice(BaseModel):
    """A plugin picked by kind whose options are not type-checked yet (``Params.load(plugins=False)``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str

    def options(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if k != "kind"}


def _plugin(registry: Registry, default: dict | None, nullable: bool = False):
    """A params field that picks a plugin of ``registry`` by ``kind`` (a discriminated union whose
    members are the registry's modules). The kind is checked against the known ones without importing
    them; ``Params.load`` types the options by the plugin's own config unless ``plugins=False``
    (what only parses: DAG files, ``vidcil validate``). Consumers build through the registry
    (``DISTILLERS.build(params.distil)``), which types either form."""

    def resolve(value: Any, info: ValidationInfo):
        if value is None and nullable:
            return None
        if isinstance(value, (PluginConfig, PluginChoice)):
            value = value.model_dump()
        if not isinstance(value, dict) or "kind" not in value:
            raise ValueError(f"pick a {registry.family} with 'kind'; known: {', '.join(registry.kinds())}")
        registry.check_kind(value["kind"])
        if not (info.context or {}).get("plugins"):  # only Params.load types them (defaults stay light)
            return PluginChoice.model_validate(value)
        try:
            return registry.config(value)
        except ValidationError as e:  # one line per problem, named by option
            raise ValueError(f"{registry.family} {value['kind']!r}: " + "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg']}" for err in e.errors())) from None

    kind = Annotated[Any, BeforeValidator(resolve),
                     PlainSerializer(lambda v: None if v is None else v.model_dump(mode="json"))]
    return kind, Field(default=default, validate_default=True)


class BenchmarkParams(_Section):
    seed: int = 0
    class_batches: int = Field(4, ge=1, le=4)  # 4 + 2 + 2 + 2 classes
    shift_batch: bool = True  # a last batch of new footage of the known classes
    train_per_class: int = Field(40, ge=1)
    test_per_class: int = Field(12, ge=1)
    shift_train_per_class: int = Field(12, ge=1)
    shift_test_per_class: int = Field(6, ge=1)
    frames: int = Field(16, ge=1)
    size: int = Field(64, ge=16, multiple_of=2)
    fps: int = Field(8, ge=1)


class ExperimentParams(_Section):
    """``vidcil benchmark``: every method side by side on a bundled stream of its own."""

    seeds: list[int] = [0, 1, 2]
    ablation_seeds: list[int] = [0]  # the memory ablation (5 more TSD runs per seed)
    landing: Path = Path("data/benchmark")
    # The memory budget of every memory method here (memory.budget_bytes is the pipeline's, for its
    # 64 px stream): keyframes of 1-2 videos per class at 10 classes. Not much lower: at 100 kB a
    # bounce/orbit video (nearly every frame a keyframe) does not fit its class's share.
    memory_budget_bytes: int = Field(150_000, ge=1)
    # Frames per clip for every method; None: the pipeline's model.num_segments. 4 frames (the setting
    # before 2026-12-07, chosen on moving digits for CPU time) left the dots stream near chance: dots move
    # 2-4 px between frames 4 apart, as far as dots lie apart, so what moved where cannot be told.
    num_segments: int | None = Field(None, ge=1)
    input_size: int = Field(48, ge=16)  # data.input_size and data.short_side here: the stream's native 48 px
    stream: BenchmarkParams = BenchmarkParams(size=48, train_per_class=24)


class PathParams(_Section):
    landing: Path = Path("data/landing")  # incoming batches (the contract)
    store: Path = Path("data/store")  # accepted batches and memory versions (DVC-tracked)
    runs: Path = Path("runs")  # per-batch step outputs and validation reports
    rejected: Path = Path("data/rejected")  # rejected batches, kept for people; never versioned
    cache: Path = Path("data/cache")  # decoded frames at the working resolution: derived, safe to delete


class DataParams(_Section):
    """The input path, file -> tensor: decode once into the cache, then sample, crop, flip, normalize.

    Frames are cached with their short side at ``short_side`` (never upscaled; at most
    ``cache_max_frames`` frames, evenly spaced, per video). Training takes a random resized crop of
    ``crop_scale`` of the frame's area, evaluation the centre ``input_size / short_side`` of it; both
    end at ``input_size`` squared.
    """

    input_size: int = Field(112, ge=16)  # the model sees input_size x input_size frames
    short_side: int = Field(128, ge=16)  # the working resolution (cache, keyframe memory)
    crop_scale: tuple[float, float] = (0.5, 1.0)  # training crop, fraction of the frame's area
    crop_ratio: tuple[float, float] = (0.75, 1.333)  # training crop aspect ratio range
    # Off by default: a mirrored "slide left" is a "slide right", and motion direction is often the class.
    flip: bool = False
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # applied inside the model, so serving
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # takes clips in [0, 1] as they are
    cache_max_frames: int = Field(64, ge=2)  # per video; long videos keep evenly spaced frames
    cache_max_bytes: int = Field(20 * 2**30, ge=1)  # least recently used entries go first
    num_workers: int = Field(2, ge=0)  # DataLoader worker processes (0: in the main process)
    pin_memory: bool = True  # only takes effect on CUDA

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"{list(v)} is not a range (0 < low <= high)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "DataParams":
        if self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale {list(self.crop_scale)}: a crop cannot exceed the frame (high <= 1)")
        if self.input_size > self.short_side:
            raise ValueError(f"input_size {self.input_size} > short_side {self.short_side}: frames would be "
                             "cached smaller than the model input; raise data.short_side")
        return self


HeadKind, _head_default = _plugin(HEADS, {"kind": "average"})


class ModelParams(_Section):
    arch: str = "resnet18"
    num_segments: int = Field(8, ge=1)
    shift_div: int = Field(8, ge=2)
    dropout: float = Field(0.3, ge=0, lt=1)
    # diff: each frame minus the one before it (TSN's RGB difference: the motion, with what stays
    # still taken out; joint accuracy 0.68 vs 0.19 for rgb on the realistic stream, README); rgb: the frames
    input: Literal["rgb", "diff"] = "diff"
    # The classifier the head ends in: linear (W x + b), or cosine (a learnt scale times the cosine
    # of x and each class's row: no class's row outgrows another's; LUCIR).
    classifier: Literal["linear", "cosine"] = "linear"
    init_weights: Path | None = None  # a local state_dict file; nothing is downloaded
    head: HeadKind = _head_default  # vidcil.core.models.heads: average | lstm | nextvlad

    @field_validator("arch")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ARCHS:
            raise ValueError(f"unknown arch {v!r}; choose one of {', '.join(ARCHS)}")
        return v

    @model_validator(mode="after")
    def _frames_for_input(self) -> "ModelParams":
        if self.input == "diff" and self.num_segments < 2:
            raise ValueError(f"input diff needs at least 2 frames per clip (num_segments is {self.num_segments}); "
                             "raise model.num_segments or set model.input: rgb")
        return self


LossWeightingKind, _weighting_default = _plugin(LOSS_WEIGHTINGS, {"kind": "fixed"})


class StudentParams(_Section):
    """How a later batch's student is made from the champion (the first batch's model is ``model``)."""

    # A smaller feature extractor than the champion's (compression), e.g. mobilenet_v3_large under a
    # resnet50 champion; it becomes the next champion's architecture. None: the champion's own.
    arch: str | None = None
    init_weights: Path | None = None  # for that backbone: a local state_dict file
    reuse_encoder: bool = False  # copy the champion head's temporal encoder (lstm, nextvlad) and keep it frozen
    min_param_ratio: float = Field(0.1, gt=0)  # reuse_encoder: student / teacher feature-extractor parameters
    max_param_ratio: float = Field(1.0, gt=0)

    @field_validator("arch")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in ARCHS:
            raise ValueError(f"unknown arch {v!r}; choose one of {', '.join(ARCHS)}")
        return v


class ConvergenceParams(_Section):
    """How long a batch trains: until a validation split carved from its training videos stops improving."""

    validation_fraction: float = Field(0.15, ge=0, lt=1)  # of each class's training videos (classes with
    # at least 4); 0: no split, every epoch runs (epochs_first / epochs exactly)
    patience: int = Field(3, ge=1)  # epochs in a row without a better validation accuracy, then stop
    min_epochs: int = Field(3, ge=1)  # never stop before this many
    # a batch with a memory: its replayed clips are scored with the held-out ones (mean per-class accuracy),
    # so the old classes count in the epoch kept; false: the held-out clips alone (the batch's classes)
    score_memory: bool = True


class BalancedFinetuneParams(_Section):
    """After training a batch that has a teacher: the classifier alone, on the student's frozen features of
    the batch + memory, with every class weighing the same in the loss (the classes kept by a few
    exemplars as much as the new ones with many clips; TCD's and EEIL's class-balanced fine-tuning)."""

    steps: int = Field(50, ge=0)  # full-batch gradient steps; 0: off (the default before 2026-12-07)
    lr: float = Field(0.05, gt=0)


class TrainParams(_Section):
    epochs_first: int = Field(12, ge=1)  # batch 0 (from scratch): at most this many epochs
    epochs: int = Field(6, ge=1)  # later batches, distilled from the champion: at most
    convergence: ConvergenceParams = ConvergenceParams()  # stop on the validation plateau, keep the best epoch
    batch_size: int = Field(8, ge=1)
    lr: float = Field(0.02, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    seed: int = 0
    threads: int = Field(2, ge=1)  # CPU threads for torch
    # GPU only (ignored on CPU): bf16 autocast where the GPU has it, else fp16 with a GradScaler.
    mixed_precision: bool = True
    channels_last: bool = True  # GPU only: NHWC convolutions (tensor cores)
    compile: bool = False  # torch.compile the student (slow first epoch, faster later ones)
    # Several GPUs (orchestration.kubernetes.gpus > 1): batch norm over the whole batch, not each GPU's share.
    sync_batchnorm: bool = True
    # How CE and the distiller's terms are weighed epoch by epoch (vidcil.core.weighting): fixed | dynamic
    loss_weighting: LossWeightingKind = _weighting_default
    # After a batch with new classes (vidcil.core.models.classifier): none | wa (weight aligning)
    bias_correction: Literal["none", "wa"] = "none"
    balanced_finetune: BalancedFinetuneParams = BalancedFinetuneParams()
    # DER++: the champion's logits are stored with each exemplar the memory takes, and on a memory clip the
    # student's logits are pulled to them (mean squared error, this weight); 0: off (nothing stored)
    logit_replay: float = Field(0.0, ge=0)
    # Cross-entropy with every class of the batch + memory weighing the same (each clip 1 / its class's
    # clips, normalised): the memory's few clips per old class against the batch's many of each new one
    class_balanced_ce: bool = False


DistilKind, _distil_default = _plugin(
    DISTILLERS, {"kind": "tsd", "alpha": 0.5, "lam": 1.0, "pooling": "mean", "normalize": True,
                 "stages": ["layer4"]}, nullable=True)
SelectionKind, _selection_default = _plugin(SELECTIONS, {"kind": "confidence"})
FramesKind, _frames_default = _plugin(FRAME_POLICIES, {"kind": "fit", "threshold": 0.02, "frames": None})


class MemoryParams(_Section):
    """The exemplar memory: which videos (``selection``), which of their frames (``frames``), in bytes."""

    replay: bool = True  # train on the batch + the memory (false: on the batch alone)
    budget_bytes: int = Field(600_000, ge=1)
    candidates_per_class: int = Field(12, ge=1)
    selection: SelectionKind = _selection_default  # vidcil.core.memory.selection: confidence | random | herding
    frames: FramesKind = _frames_default  # vidcil.core.memory.frames: fit (default) | keyframes | uniform | adaptive


class GateParams(_Section):
    min_accuracy: float = Field(0.5, ge=0, le=1)  # on all classes seen so far
    min_new_accuracy: float = Field(0.3, ge=0, le=1)  # on this batch's test videos
    # The same as the share of the way from chance (1 / classes known) to perfect: 0 = chance, 1 = perfect;
    # a floor of 0 is off.
    min_accuracy_over_chance: float = Field(0.25, ge=0, le=1)
    min_new_accuracy_over_chance: float = Field(0.1, ge=0, le=1)
    max_forgetting: float = Field(0.35, ge=0, le=1)  # mean forgetting
    max_old_drop: float = Field(0.15, ge=0, le=1)  # challenger vs champion on the old classes
    require_learning: bool = True  # hold a model whose training did not learn (loss / validation at chance)


class ValidationParams(_Section):
    """Thresholds of the Great Expectations suite run on every incoming batch."""

    min_frames: int | None = Field(None, ge=1)  # default: model.num_segments (what the model samples)
    min_train_per_class: int = Field(4, ge=1)
    min_test_per_class: int = Field(2, ge=1)  # a new class must bring test videos
    min_side: int = Field(16, ge=1)  # pixels, width and height
    max_side: int = Field(4096, ge=1)  # larger videos are refused without being decoded (4K accepted)
    min_duration_s: float = Field(0.1, ge=0)
    max_duration_s: float = Field(600.0, gt=0)
    allow_variable_frame_rate: bool = False
    max_quarantined_fraction: float = Field(0.2, ge=0, le=1)  # more bad rows: the batch is rejected
    label_pattern: str | None = None  # a regex class names must match; None: vidcil.io.validation.LABEL_PATTERN


class VersioningParams(_Section):
    """DVC: accepted batches, memory versions and the test index are `dvc add`-ed in the store."""

    dvc: bool = True
    push: bool = True  # `dvc push` each new version to the remote
    remote: str | None = None  # default: the project's default remote (.dvc/config)


class KubernetesParams(_Section):
    """Steps as pods: the GPU step's pod (Airflow KubernetesPodOperator) and every step of the Kubeflow
    pipeline (pipelines/); ``cpu``/``memory`` size the GPU step, the others take their spec's resources."""

    namespace: str = "vidcil"
    image: str = "ghcr.io/vidcil/trainer:0.1.0"  # infra/Dockerfile.trainer
    kubernetes_conn_id: str = "kubernetes_default"
    gpus: int = Field(1, ge=0)  # nvidia.com/gpu limit; more than 1: distil under torchrun (DDP), one process per GPU
    cpu: str = "4"
    memory: str = "16Gi"
    shm_size: str = "8Gi"  # in-memory /dev/shm for DataLoader workers (the default is 64 MB)
    tmp_size: str = "20Gi"  # /tmp on the node's disk, the root filesystem being read-only: scratch (MLflow staging)
    deferrable: bool = True  # Airflow: the pod is watched by the triggerer (run `airflow triggerer`)
    run_as_user: int = Field(1000, ge=1)  # the image's non-root user (infra/Dockerfile.trainer)
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    tolerations: list[dict[str, str]] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    store_claim: str = "vidcil-store"  # a ReadWriteMany PVC holding the project dir (store, runs, params)
    project_dir: str = "/vidcil"  # where that claim is mounted in the pod
    # Kubernetes Secrets, by reference: name -> its keys, each exposed as the env variable of that name
    # (Airflow: envFrom the whole Secret; Kubeflow: each key). Values never appear here (infra/k8s/).
    secrets: dict[str, list[str]] = {"vidcil-s3": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
                                     "vidcil-mlflow": ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]}
    env: dict[str, str] = {"MLFLOW_S3_ENDPOINT_URL": "http://minio.vidcil.svc:9000",  # plain settings, no secrets
                           "AWS_ENDPOINT_URL": "http://minio.vidcil.svc:9000"}
    mlflow_tracking_uri: str = "http://mlflow.vidcil.svc:5000"  # pods log over HTTP (infra/k8s/mlflow.yaml)
    schedule_timeout_seconds: int = Field(1800, ge=1)  # waiting for a GPU node to scale up
    startup_timeout_seconds: int = Field(900, ge=1)  # pulling a large CUDA image
    service_account: str | None = "vidcil-step"  # the steps' pods: no Kubernetes API rights (infra/k8s/rbac.yaml)


class OrchestrationParams(_Section):
    """How Airflow runs the pipeline (dags/)."""

    landing_uri: str | None = None  # a folder or s3://bucket/prefix; default paths.landing
    watch_every_minutes: int = Field(5, ge=1)  # how often the landing zone is listed
    distil_on: Literal["local", "kubernetes"] = "local"  # VIDCIL_DISTIL_ON overrides
    retries: int = Field(2, ge=0)
    lock_wait_minutes: float = Field(10, ge=0)  # a second writer waits this long for the project lock, then exits
    # A step that failed this many attempts in a row (Airflow tries, reruns) sets its batch aside
    # (retired, kind "failed"): the stream goes on without it. 0: never (the stream waits for a fix).
    max_attempts: int = Field(3, ge=0)
    # S3 (the landing zone; MLflow's artifacts through $AWS_MAX_ATTEMPTS): an endpoint that does not
    # answer is asked this many more times, this long each, then the step stops with one line naming it.
    s3_retries: int = Field(2, ge=0)
    s3_timeout_s: int = Field(20, ge=1)
    kubernetes: KubernetesParams = KubernetesParams()


class MlflowParams(_Section):
    tracking_uri: str | None = None  # default: sqlite:///mlflow.db in the project; env wins
    experiment: str = "vidcil"
    artifact_location: str | None = None  # e.g. s3://bucket/mlflow; default mlartifacts/ beside SQLite
    model_name: str = "vidcil-video-classifier"
    retries: int = Field(2, ge=0)  # a server that does not answer: asked this many more times, then a clear error
    timeout_s: int = Field(20, ge=1)  # per request


class Params(_Section):
    benchmark: BenchmarkParams = BenchmarkParams()
    experiments: ExperimentParams = ExperimentParams()
    paths: PathParams = PathParams()
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    student: StudentParams = StudentParams()
    # vidcil.core.distill: tsd | pod | lwf | encoder (kind + its options, lam and stages); null: no distillation
    distil: DistilKind = _distil_default
    memory: MemoryParams = MemoryParams()
    gates: GateParams = GateParams()
    validation: ValidationParams = ValidationParams()
    versioning: VersioningParams = VersioningParams()
    orchestration: OrchestrationParams = OrchestrationParams()
    mlflow: MlflowParams = MlflowParams()

    @model_validator(mode="after")
    def _frames_enough(self) -> "Params":
        if self.data.cache_max_frames < 2 * self.model.num_segments:
            raise ValueError(f"data.cache_max_frames {self.data.cache_max_frames} < 2 x model.num_segments "
                             f"({self.model.num_segments}): TSN sampling needs frames to choose from")
        return self

    def typed(self) -> "Params":
        """These params with every plugin's options typed by its own config (imports the plugins)."""
        return type(self).model_validate(self.model_dump(), context={"plugins": True})

    @classmethod
    def load(cls, path: str | Path = "params.yaml", *, plugins: bool = True) -> "Params":
        """``plugins=False``: plugin kinds are checked, their options not (nothing heavy is imported)."""
        path = Path(path)
        if not path.is_file():  # never built-in defaults in place of a mistyped path
            raise FileNotFoundError(f"params file {path} does not exist (working directory {Path.cwd()}); pass "
                                    "--params PATH, or copy the repository's params.yaml, which documents every option")
        data = yaml.safe_load(path.read_text())
        try:
            return cls.model_validate(data or {}, context={"plugins": plugins})
        except ValidationError as e:  # one line per wrong field: where, what is wrong, what was given
            lines = [f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']} (given: {err.get('input')!r})"
                     for err in e.errors(include_url=False)]
            raise ValueError(f"{path}: {len(lines)} setting(s) to fix:\n  " + "\n  ".join(lines)) from None
        except Exception as e:
            raise ValueError(f"{path}: {e}") from e
