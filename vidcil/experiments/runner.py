"""Run every method on one stream, same seeds and memory budget, in one process.

The stream is any landing folder in the incoming-batch contract; each batch goes through the same
Great Expectations validation as in the pipeline (rejected batches are left out, with the reason).
Videos are decoded once, by the validation, into the pipeline's decoded-frame cache, and read from
it by every run through the pipeline's transforms and loaders. A method is a configuration of the
pipeline's learner (:mod:`vidcil.core.learner`: ``make_student``, ``learn_batch``,
``exemplar_priority``, ``accuracy_by_group``) and memory (``build_memory`` with the configured
frame policy); a run skips only what a comparison does not need: MLflow, DVC and the promotion
gates (every new model becomes the next teacher).
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from vidcil.config import Params
from vidcil.io.cache import FrameCache
from vidcil.io.clips import ClipRef
from vidcil.io.validation import Rules, validate_batch
from vidcil.core import metrics
from vidcil.core.learner import (accuracy_by_group, encodings, exemplar_priority, holdout, learn_batch,
                                 make_student)
from vidcil.core.memory.ranking import rank_exemplars
from vidcil.core.training import predict_proba
from vidcil.core.models.tsm import VideoRecognizer
from vidcil.experiments.methods import CURVES, Method
from vidcil.io.inputs import clip_dataset, loader_options, train_options
from vidcil.io.memory_store import KeyframeMemory, build_memory, empty_memory, frame_policy


@dataclass
class Batch:
    batch_id: str
    folder: Path
    rows: pd.DataFrame  # accepted rows: video, label, split


@dataclass
class Stream:
    batches: list[Batch]
    classes: list[str]  # arrival order (sorted within a batch): class i is logit i
    cache: FrameCache  # every accepted video, decoded once (by the validation)
    rejected: dict[str, list[str]] = field(default_factory=dict)

    def refs(self, batch: Batch, split: str) -> list[ClipRef]:
        rows = batch.rows[batch.rows["split"] == split]
        return [ClipRef(batch.folder / r.video, self.classes.index(r.label), batch.batch_id, r.video, r.sha256)
                for r in rows.itertuples()]

    def frames(self, batch_id: str, video: str) -> np.ndarray:
        batch = next(b for b in self.batches if b.batch_id == batch_id)
        sha = batch.rows.loc[batch.rows["video"] == video, "sha256"].iloc[0]
        return self.cache.frames(batch.folder / video, sha)

    def seen_classes(self, k: int) -> int:
        return len({c for b in self.batches[: k + 1] for c in b.rows["label"]})


def load_stream(landing: Path, rules: Rules, report_dir: Path, cache: FrameCache,
                on_batch: Callable[[str], None] = print) -> Stream:
    """Validate every batch under ``landing`` (arrival order), its videos decoded into ``cache``."""
    folders = sorted(p for p in Path(landing).iterdir() if (p / "labels.csv").is_file())
    if not folders:
        raise FileNotFoundError(f"{landing}: no batch folder with a labels.csv (the incoming-batch contract)")
    stream = Stream([], [], cache)
    for folder in folders:
        verdict = validate_batch(folder, rules, report_dir / folder.name, cache=cache)
        if not verdict.accepted:
            stream.rejected[folder.name] = verdict.reasons
            on_batch(f"{folder.name}: REJECTED, left out of the benchmark: {'; '.join(verdict.reasons)}")
            continue
        rows = verdict.accepted_rows[["video", "label", "split", "sha256"]]
        batch = Batch(folder.name, folder, rows)
        stream.batches.append(batch)
        stream.classes += [c for c in sorted(set(rows["label"])) if c not in stream.classes]
        on_batch(f"{folder.name}: {len(rows)} videos, classes {', '.join(sorted(set(rows['label'])))}")
    if not stream.batches:
        raise ValueError(f"{landing}: every batch was rejected; nothing to benchmark")
    return stream


@dataclass
class BatchResult:
    batch_id: str
    row: list[float]  # accuracy on each seen batch's test videos
    accuracy_all_seen: float
    memory_bytes: int
    memory_clips: int
    steps: int
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (steps, accuracy all seen) per epoch


@dataclass
class RunResult:
    method: str
    seed: int
    batches: list[BatchResult]
    final: dict[str, float] = field(default_factory=dict)  # of the last model: hit@1, parameters, CPU latency

    def metrics(self) -> dict[str, float]:
        A = metrics.accuracy_matrix(self.matrix())
        acc = [b.accuracy_all_seen for b in self.batches]
        return {
            "final_accuracy": acc[-1],
            "average_incremental_accuracy": metrics.average_incremental_accuracy(acc),
            "forgetting_first": metrics.forgetting_first(A),
            "mean_forgetting": metrics.mean_forgetting(A),
            "backward_transfer": metrics.backward_transfer(A),
            "memory_bytes": self.batches[-1].memory_bytes,
            "optimizer_steps": sum(b.steps for b in self.batches),
            "wall_seconds": sum(b.seconds for b in self.batches),
            **self.final,
        }

    def matrix(self) -> list[list[float]]:
        return [b.row for b in self.batches]


class Evaluator:
    """Accuracy of a model on each batch's test videos, as the pipeline's evaluate step computes it
    (:func:`~vidcil.core.learner.accuracy_by_group`), one batch's test set at a time (datasets built once)."""

    def __init__(self, stream: Stream, params: Params, num_segments: int | None = None):
        self.options = loader_options(params)
        self.ids = [b.batch_id for b in stream.batches]
        self.sets = [clip_dataset(params, stream.refs(b, "test"), train=False, num_segments=num_segments,
                                  cache=stream.cache) for b in stream.batches]

    def __call__(self, model: VideoRecognizer, k: int) -> tuple[list[float], float]:
        """Per-batch accuracy on batches ``0..k`` and the accuracy over all their test videos."""
        row, correct = [], []
        for batch_id, data in zip(self.ids[: k + 1], self.sets[: k + 1]):
            (accuracy,), _, predicted = accuracy_by_group(model, data, np.full(len(data), batch_id), [batch_id],
                                                          **self.options)
            row.append(accuracy)
            correct.append(predicted == data.labels)
        return row, float(np.concatenate(correct).mean())

    def hit_at_1(self, model: VideoRecognizer, k: int) -> float:
        """Hit@1 over the test videos of batches ``0..k`` (each clip has one label: the top-1 accuracy)."""
        scores = [predict_proba(model, data, **self.options) for data in self.sets[: k + 1]]
        labels = np.concatenate([data.labels for data in self.sets[: k + 1]])
        return metrics.hit_at_k(np.concatenate(scores), labels, k=1)

    def nme(self, model: VideoRecognizer, prototypes, k: int) -> float:
        """Nearest-mean-of-exemplars accuracy over the test videos of batches ``0..k``: class means of
        ``model``'s encodings of ``prototypes`` (a dataset of the clips the learner holds)."""
        test = [encodings(model, data, **self.options).cpu().numpy() for data in self.sets[: k + 1]]
        labels = np.concatenate([data.labels for data in self.sets[: k + 1]])
        held = encodings(model, prototypes, **self.options).cpu().numpy()
        return metrics.nearest_mean_accuracy(held, prototypes.labels, np.concatenate(test), labels)


def cpu_latency_ms(model: VideoRecognizer, input_size: int, repeats: int = 20) -> float:
    """Median wall time of one clip ``[1, T, 3, S, S]`` through a CPU copy of ``model``, in ms."""
    model = copy.deepcopy(model).cpu().eval()
    x = torch.rand(1, model.num_segments, 3, input_size, input_size)
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:  # warm-up calls left out
                times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


class BenchmarkRunner:
    """One stream, one seed: a batch-0 model shared by every method, then each method's stream."""

    def __init__(self, stream: Stream, params: Params, seed: int, workdir: Path):
        self.stream, self.params, self.seed = stream, params, seed
        self.workdir = Path(workdir)
        self.evaluate = Evaluator(stream, params)
        self._base: dict[str, tuple[VideoRecognizer, BatchResult]] = {}  # by params.model
        self.measuring = 0.0  # seconds spent evaluating inside training (curves): left out of wall times

    # -- training ----------------------------------------------------------------------------

    def _learn(self, params: Params, refs, k, *, teacher=None, curve=None, num_segments=None,
               on_epoch=None, memory_refs=()) -> tuple[VideoRecognizer, int]:
        """The pipeline's learner on batch ``k`` with ``params`` (a method's): the model and its steps.
        ``refs``: the batch's training clips, of which the learner holds out its validation split as the
        pipeline does; ``memory_refs``: replayed clips (always trained on)."""
        refs, held = holdout(list(refs), params.train.convergence.validation_fraction, params.train.seed)
        data = clip_dataset(params, refs + list(memory_refs), train=True, num_segments=num_segments,
                            cache=self.stream.cache)
        validation = (clip_dataset(params, held, train=False, num_segments=num_segments, cache=self.stream.cache)
                      if held else None)
        scored_memory = (clip_dataset(params, list(memory_refs), train=False, num_segments=num_segments,
                                      cache=self.stream.cache) if held and memory_refs else None)
        student = make_student(teacher, self.stream.seen_classes(k), model=params.model, mean=params.data.mean,
                               std=params.data.std, seed=self.seed, num_segments=num_segments,
                               student=params.student)

        def epoch_done(epoch, row):
            if curve is not None:  # accuracy after every epoch, for steps-to-target (not training time)
                start = time.perf_counter()
                # Measuring must not change what is learnt: a DataLoader draws its base seed from torch's
                # global generator, which dropout draws from too; the state is put back afterwards.
                with torch.random.fork_rng(devices=[]):
                    curve.append((row["steps"], self.evaluate(student, k)[1]))
                student.train()
                self.measuring += time.perf_counter() - start
            if on_epoch:
                on_epoch()

        result = learn_batch(student, data, teacher=teacher, distil=params.distil, train_options=params.train,
                             seed=self.seed + k, validation=validation, memory=scored_memory,
                             on_epoch=epoch_done, **train_options(params))
        return student, result.steps

    def base_model(self, on_epoch=None, params: Params | None = None) -> tuple[VideoRecognizer, BatchResult]:
        """Batch 0, from scratch: the same for every method with the same ``params.model`` (same seed,
        data, epochs), so trained once per model."""
        params = params or self.params
        key = params.model.model_dump_json()
        if key not in self._base:
            first = self.stream.batches[0]
            start = time.perf_counter()
            model, steps = self._learn(params, self.stream.refs(first, "train"), 0, on_epoch=on_epoch)
            seconds = time.perf_counter() - start
            row, acc = self.evaluate(model, 0)
            self._base[key] = model, BatchResult(first.batch_id, row, acc, 0, 0, steps, seconds)
        model, result = self._base[key]
        return copy.deepcopy(model), copy.deepcopy(result)

    # -- memory -------------------------------------------------------------------------------

    def _next_memory(self, params: Params, name: str, memory: KeyframeMemory, teacher: VideoRecognizer,
                     k: int) -> KeyframeMemory:
        """Exemplars of batch ``k - 1`` (just learnt by ``teacher``) folded into the memory batch ``k`` trains on."""
        p, learnt = params.memory, self.stream.batches[k - 1]
        refs = self.stream.refs(learnt, "train")
        data = clip_dataset(params, refs, train=False, cache=self.stream.cache)
        confidence, priority, logits = exemplar_priority(teacher, data, p.selection, seed=(self.seed, k),
                                                         **loader_options(params))
        candidates = pd.DataFrame({"batch_id": learnt.batch_id, "video": [r.video for r in refs],
                                   "label": [self.stream.classes[i] for i in data.labels],
                                   "confidence": confidence, "priority": priority})
        if params.train.logit_replay > 0:  # DER++: the teacher's logits go into the memory with each exemplar
            candidates["logits"] = list(logits)
        ranked = rank_exemplars(candidates, p.candidates_per_class, by="priority")
        try:
            return build_memory(memory, ranked, self.stream.frames,
                                self.workdir / name / "memory" / self.stream.batches[k].batch_id,
                                budget_bytes=p.budget_bytes, threshold=p.frames.options().get("threshold"),
                                batches=(*memory.batches, learnt.batch_id), frame_policy=frame_policy(p.frames, params.model.num_segments))
        except ValueError as e:  # the pipeline's advice names its own knob; here the budget is the benchmark's
            raise ValueError(f"{name}, seed {self.seed}, memory for {self.stream.batches[k].batch_id}: {e} "
                             f"(in the benchmark: experiments.memory_budget_bytes, now {p.budget_bytes})") from e

    def _memory_refs(self, memory: KeyframeMemory) -> list[ClipRef]:
        return memory.refs({c: i for i, c in enumerate(self.stream.classes)})

    # -- one method's stream --------------------------------------------------------------------

    def run(self, method: Method, on_batch: Callable[[BatchResult], None] | None = None,
            on_epoch=None) -> RunResult:
        """``method``'s stream: each batch learnt by the pipeline's learner with ``method.params``."""
        p, batches = method.params(self.params), self.stream.batches
        model, first = self.base_model(on_epoch, p)
        results = [first]
        if on_batch:
            on_batch(first)
        memory = empty_memory(self.workdir / method.name / "memory" / "none", p.memory.budget_bytes,
                              p.memory.frames.options().get("threshold"))
        for k in range(1, len(batches)):
            curve = [] if method.name in CURVES else None
            start, self.measuring = time.perf_counter(), 0.0
            if method.joint:
                refs = [r for b in batches[: k + 1] for r in self.stream.refs(b, "train")]
                model, steps = self._learn(p, refs, k, curve=curve, on_epoch=on_epoch)
                stored = sum((b.folder / v).stat().st_size for b in batches[: k + 1]
                             for v in b.rows.loc[b.rows["split"] == "train", "video"])
                clips = len(refs)
            else:
                teacher = model
                if p.memory.replay:
                    memory = self._next_memory(p, method.name, memory, teacher, k)
                model, steps = self._learn(p, self.stream.refs(batches[k], "train"), k, teacher=teacher, curve=curve,
                                           on_epoch=on_epoch,
                                           memory_refs=self._memory_refs(memory) if p.memory.replay else ())
                stored = memory.bytes_on_disk if p.memory.replay else 0
                clips = len(memory.entries) if p.memory.replay else 0
            seconds = time.perf_counter() - start - self.measuring
            row, acc = self.evaluate(model, k)
            results.append(BatchResult(batches[k].batch_id, row, acc, stored, clips, steps, seconds, curve or []))
            if on_batch:
                on_batch(results[-1])
        held = refs if method.joint and len(batches) > 1 else (
            self.stream.refs(batches[-1], "train") + (self._memory_refs(memory) if p.memory.replay else []))
        prototypes = clip_dataset(p, held, train=False, cache=self.stream.cache)
        final = {"final_hit_at_1": self.evaluate.hit_at_1(model, len(batches) - 1),
                 "final_nme_accuracy": self.evaluate.nme(model, prototypes, len(batches) - 1),
                 "parameters": sum(t.numel() for t in model.parameters()),
                 "cpu_latency_ms": cpu_latency_ms(model, p.data.input_size)}
        return RunResult(method.name, self.seed, results, final)

    def joint(self, params: Params | None = None, num_segments: int | None = None, on_epoch=None) -> dict:
        """The learner trained once on every batch at once (all classes, from scratch, as batch 0 is
        learnt: ``epochs_first`` at most, stopped by its validation split): its accuracy on all test
        videos, optimizer steps, epochs and wall seconds."""
        params = params or self.params
        k = len(self.stream.batches) - 1
        refs = [r for b in self.stream.batches for r in self.stream.refs(b, "train")]
        start = time.perf_counter()
        model, steps = self._learn(params, refs, k, num_segments=num_segments, on_epoch=on_epoch)
        seconds = time.perf_counter() - start
        same = num_segments is None and params.data == self.params.data and \
            params.model.num_segments == self.params.model.num_segments
        evaluate = self.evaluate if same else Evaluator(self.stream, params, num_segments=num_segments)
        return {"accuracy": evaluate(model, k)[1], "steps": steps, "seconds": seconds,
                "classes": len(self.stream.classes), "train_clips": len(refs),
                "parameters": sum(t.numel() for t in model.parameters())}

    def single_frame(self, on_epoch=None) -> float:
        """A model that sees one frame per clip, trained on every batch at once: accuracy on all test videos.
        Its input is the frame itself (a difference needs two)."""
        params = self.params.model_copy(update={"model": self.params.model.model_copy(update={"input": "rgb"})})
        return self.joint(params, num_segments=1, on_epoch=on_epoch)["accuracy"]


def scratch_dir(root: Path | None = None) -> Path:
    """Where runs write their memories (real shards on disk, so bytes are real)."""
    return Path(tempfile.mkdtemp(prefix="vidcil-bench-", dir=root))
