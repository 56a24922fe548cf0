"""The per-batch steps. Each takes the validated params and a batch id, reads what earlier steps
wrote (``runs/<batch_id>/<step>.json``, the data store, the MLflow registry) and writes its own
small JSON output. :data:`vidcil.pipeline.spec.PIPELINE` gives their order, inputs and outputs;
components/ wraps each one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd

from vidcil.io import plots
from vidcil.io import mlflow_registry
from vidcil.io import data_versions
from vidcil.io.code_version import code_version
from vidcil.config import Params
from vidcil.io.contract import MANIFEST_COLUMNS, BatchRejected, content_hash
from vidcil.io.validation import (
    BATCH_ID, MANIFEST_FACTS, Verdict, known_videos, validate_batch, validation_rules, write_report,
)
from vidcil.io.inputs import clip_dataset, frame_cache, loader_options, train_options
from vidcil.core.memory.ranking import rank_exemplars
from vidcil.io.memory_store import build_memory, describe_choice, frame_policy, per_class_summary, stored_logits
from vidcil.core import metrics
from vidcil.core.gates import evaluate_gates
from vidcil.io.store import Store
from vidcil.pipeline.state import (
    champion, latest_record, pending_batches, project_id, read_output, run_dir, write_output,
)
from vidcil.io.progress import EpochProgress

if TYPE_CHECKING:
    from vidcil.core import distributed

# torch (and the learner) are imported by the steps that train, score or evaluate a model:
# validation, keyframes, gates and promotion start in a second or two, not ten (an Airflow task each).


def _store(params: Params) -> Store:
    return Store(params.paths.store)


# -- 0. land --------------------------------------------------------------------------------

def land(params: Params, batch_id: str) -> dict:
    """Bring the batch from the landing zone (``orchestration.landing_uri``: a folder or an S3 prefix)
    into ``paths.landing``; nothing to do when it lands there directly or is there already."""
    from vidcil.io.landing import LandingZone

    dest = params.paths.landing / batch_id
    uri = params.orchestration.landing_uri
    if uri and not (dest / "labels.csv").is_file():
        o = params.orchestration
        LandingZone(uri, retries=o.s3_retries, timeout_s=o.s3_timeout_s).fetch(batch_id, dest)
    return write_output(params, batch_id, "land", {"batch_id": batch_id, "landing": str(dest), "source": uri})


# -- 1. validate -----------------------------------------------------------------------------

def _batch_id_problem(batch_id: str, accepted: list[str]) -> str | None:
    if not BATCH_ID.match(batch_id):
        return (f"batch id {batch_id!r} is not a valid id; use 1-64 ASCII letters, digits, '_', '.', '-' "
                "that sort in arrival order (e.g. b007 or 2026-11-22T10.00)")
    if accepted and batch_id not in accepted and batch_id < accepted[-1]:
        return (f"batch id {batch_id!r} sorts before {accepted[-1]!r}, which is accepted already; batch ids "
                "must sort in arrival order — land the batch again under a later id")
    return None


def _log_validation(batch_id: str, summary: dict, report: Path, data_hash: str | None, project: str) -> None:
    """One MLflow run per validation (reused when the same content is validated again)."""
    tags = {f"{mlflow_registry.TAG}batch_id": batch_id, f"{mlflow_registry.TAG}step": "validate",
            f"{mlflow_registry.TAG}verdict": summary["verdict"], f"{mlflow_registry.TAG}data_hash": data_hash or ""}
    if data_hash and not mlflow.search_runs(filter_string=" and ".join(
            f"tags.`{k}` = '{v}'" for k, v in tags.items()), max_results=1).empty:
        return
    with mlflow.start_run(run_name=f"{batch_id} validate", tags=tags | {f"{mlflow_registry.TAG}project": project}):
        mlflow.log_metrics({"rows": summary["rows"], "accepted_rows": summary["accepted_rows"],
                            "quarantined": len(summary["quarantined"])})
        for name in ("summary.json", "manifest.csv", "quarantine.csv"):
            mlflow.log_artifact(str(report / name), "validation")
        docs = report / "gx" / "uncommitted" / "data_docs" / "local_site"
        if docs.is_dir():
            mlflow.log_artifacts(str(docs), "validation/data_docs")


def _store_batch(store: Store, batch_id: str, source: Path, rows: pd.DataFrame) -> None:
    """Copy the accepted videos and their manifest into the store (all or nothing)."""
    target = store.batch_dir(batch_id)
    staging = target.with_name(f".{batch_id}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for video in rows["video"]:
        (staging / video).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / video, staging / video)
    rows.to_csv(staging / "manifest.csv", index=False)
    os.replace(staging, target)


def write_test_index(store: Store) -> Path:
    """The cumulative test index: every accepted test video so far (what evaluation runs on)."""
    rows = store.rows(store.accepted(), "test")[["batch_id", "video", "label", "sha256"]]
    tmp = store.test_index.with_name(f".{store.test_index.name}.partial")
    rows.to_csv(tmp, index=False)
    os.replace(tmp, store.test_index)
    return store.test_index


def _budget_problem(params: Params, store: Store, batch_id: str, rows: pd.DataFrame) -> str | None:
    """Whether the memory budget can hold one exemplar of every class once this batch is learnt, checked
    on the batch's own videos (their smallest one-frame shard at the working resolution, as step 3
    would write it) and on the stored memory (its smallest exemplar per class): a budget too small is
    found here, before the batch is stored and versioned, not at step 3. Only for frame policies that
    do not adapt (``keyframes``, ``uniform``, ``adaptive``); ``fit`` never refuses."""
    from vidcil.core.memory.ranking import class_share
    from vidcil.io.memory_store import shard_size

    if not params.memory.replay or getattr(frame_policy(params.memory.frames, params.model.num_segments), "adapts", False):
        return None  # an adapting frame policy (fit) makes every exemplar fit its share

    champ = champion(params)
    memory = store.memory(champ.batch_id if champ else None, params.memory.budget_bytes, _threshold(params))
    old = memory.entries.groupby("label")["bytes"].min().to_dict() if len(memory.entries) else {}
    classes = set(old) | set(champ.class_names if champ else []) | set(rows["label"])
    share = class_share(params.memory.budget_bytes, len(classes))
    # Classes not in the memory yet: this batch's, and the champion's whose exemplars step 2 picks next.
    cache, need = frame_cache(params), dict(old)
    learnt = store.rows(store.accepted(champ.batch_id) if champ else [], "train")
    videos = pd.concat([learnt.assign(folder=[str(store.batch_dir(b)) for b in learnt["batch_id"]]),
                        rows[rows["split"] == "train"].assign(folder=str(params.paths.landing / batch_id))])
    for label, group in videos[~videos["label"].isin(list(need))].groupby("label"):
        sizes = []
        for r in group.head(3).itertuples():  # a few videos: the memory keeps the smallest that fits
            frames = cache.frames(Path(r.folder) / r.video, r.sha256)
            sizes.append(shard_size(np.asarray(frames[:1])))
        need[label] = min(sizes)
    over = {c: b for c, b in need.items() if b > share}
    if not over:
        return None
    worst = max(over.values())
    return (f"memory.budget_bytes {params.memory.budget_bytes} B leaves {share} B per class for the {len(classes)} "
            f"classes after this batch, too little for one exemplar of {', '.join(sorted(over)[:5])}"
            f"{' …' if len(over) > 5 else ''} (one frame at the working resolution takes up to {worst} B); raise "
            f"memory.budget_bytes to at least {worst * len(classes) + 4096} or lower data.short_side, then land it again")


def validate(params: Params, batch_id: str) -> dict:
    """Probe the landed batch and run the GX suite; accept it into the versioned store or reject it.

    Bad rows are quarantined (reasons in ``runs/<batch>/validation/quarantine.csv``); a bad batch is
    rejected (:class:`BatchRejected`), kept under ``paths.rejected`` for people, and never enters the
    store or a data version. The report (summary.json + GX Data Docs) is kept with the run and logged
    to MLflow either way.
    """
    store = _store(params)
    source = params.paths.landing / batch_id
    report = run_dir(params, batch_id) / "validation"
    accepted_ids = store.accepted()
    known = known_videos(store, batch_id)
    problem = _batch_id_problem(batch_id, accepted_ids)
    if (gone := store.retirement(batch_id)) is not None:
        problem = (f"batch {batch_id} is {gone['kind']} ({gone['reason']}); its id is taken for good: land the "
                   f"corrected batch under a new id that sorts after {max(store.stored())}")
    if problem:
        verdict = Verdict(batch_id, [problem], pd.DataFrame(columns=MANIFEST_FACTS + ["reason"]))
    else:
        verdict = validate_batch(source, validation_rules(params), report, known=known, cache=frame_cache(params))
    rows = verdict.accepted_rows if verdict.accepted else pd.DataFrame(columns=MANIFEST_FACTS + ["reason"])
    rows = rows[MANIFEST_COLUMNS + [c for c in rows.columns if c not in MANIFEST_FACTS + ["reason"]]].astype(
        {"bytes": int, "frames": int, "width": int, "height": int, "variable_frame_rate": bool})
    if verdict.accepted and batch_id not in accepted_ids and (short := _budget_problem(params, store, batch_id, rows)):
        verdict.reasons.append(short)
    data_hash = content_hash(rows) if verdict.accepted else None
    if verdict.accepted and batch_id in accepted_ids and content_hash(store.manifest(batch_id)) != data_hash:
        verdict.reasons.append(f"batch id {batch_id} was accepted already with other content; give new data a "
                               "new batch id (the stored batch is unchanged)")
        data_hash = None
    summary = write_report(verdict, report)
    if not verdict.accepted:
        if source.is_dir():  # kept for people to inspect; outside the store, never versioned
            kept = params.paths.rejected / batch_id / time.strftime("%Y%m%dT%H%M%S")
            shutil.copytree(source, kept, symlinks=True, dirs_exist_ok=True)
            summary["kept_at"] = str(kept)
        _log_validation(batch_id, summary, report, None, project_id(params))
        write_output(params, batch_id, "validate", {"batch_id": batch_id, "verdict": "rejected",
                                                    "reason": " | ".join(verdict.reasons), "report": str(report)})
        raise BatchRejected(" | ".join(verdict.reasons))
    if batch_id not in accepted_ids:
        _store_batch(store, batch_id, source, rows)
    test_index = write_test_index(store)
    versions = {}
    if params.versioning.dvc:
        versions = data_versions.track([store.batch_dir(batch_id), test_index],
                                    push=params.versioning.push, remote=params.versioning.remote)
    _log_validation(batch_id, summary, report, data_hash, project_id(params))
    known_classes = set()
    for b in store.accepted():
        if b < batch_id:
            known_classes |= set(store.manifest(b)["label"])
    return write_output(params, batch_id, "validate", {
        "batch_id": batch_id, "verdict": "accepted", "data_hash": data_hash,
        "data_version": versions.get(str(store.batch_dir(batch_id).resolve()), data_versions.UNTRACKED),
        "test_index_version": versions.get(str(test_index.resolve()), data_versions.UNTRACKED),
        "accepted": len(rows), "quarantined": summary["quarantined"], "report": str(report),
        "data_docs": summary["data_docs"],
        "classes": sorted(set(rows["label"])), "new_classes": sorted(set(rows["label"]) - known_classes),
    })


# -- 2. select exemplars ---------------------------------------------------------------------

def select_exemplars(params: Params, batch_id: str) -> dict:
    """Score the champion's not-yet-remembered training videos by confidence; rank per class."""
    store, champ = _store(params), champion(params)
    out = run_dir(params, batch_id)
    result = {"batch_id": batch_id, "teacher_version": None, "batches": [], "candidates": 0}
    ranked = pd.DataFrame(columns=["batch_id", "video", "label", "sha256", "confidence", "priority", "rank"])
    if champ is not None and params.memory.replay:
        memory = store.memory(champ.batch_id, params.memory.budget_bytes, _threshold(params))
        batches = [b for b in store.accepted(champ.batch_id) if b not in memory.batches]
        rows = store.rows(batches, "train")
        rows = rows[rows["label"].isin(champ.class_names)].reset_index(drop=True)
        if not rows.empty:
            from vidcil.core.learner import exemplar_priority

            teacher, _ = mlflow_registry.load_version(params.mlflow.model_name, champ.version)
            data = clip_dataset(params, store.refs(rows, champ.class_names), train=False)
            rows["confidence"], rows["priority"], logits = exemplar_priority(
                teacher, data, params.memory.selection, seed=(params.train.seed, len(batches)), **loader_options(params))
            columns = ["batch_id", "video", "label", "sha256", "confidence", "priority"]
            if params.train.logit_replay > 0:  # DER++: stored with each exemplar the memory takes (JSON in the CSV)
                rows["logits"] = [json.dumps(stored_logits(z)) for z in logits]
                columns.append("logits")
            ranked = rank_exemplars(rows[columns], params.memory.candidates_per_class, by="priority")
        result.update(teacher_version=champ.version, batches=batches, candidates=len(ranked))
    ranked.to_csv(out / "exemplars.csv", index=False)
    return write_output(params, batch_id, "select_exemplars", result)


def _threshold(params: Params) -> float | None:
    """The keyframe threshold recorded with a memory version (None for policies without one)."""
    return params.memory.frames.options().get("threshold")


# -- 3. extract keyframes --------------------------------------------------------------------

def extract_keyframes(params: Params, batch_id: str) -> dict:
    """Write the memory version batch ``batch_id`` trains on: old memory rebalanced + new keyframes."""
    store, champ = _store(params), champion(params)
    target = store.memory_dir / batch_id
    if (target / "index.json").is_file():
        memory = store.memory(batch_id, params.memory.budget_bytes, _threshold(params))
    else:
        selection = read_output(params, batch_id, "select_exemplars")
        ranked = pd.read_csv(run_dir(params, batch_id) / "exemplars.csv",
                             dtype={"label": str, "video": str, "sha256": str})
        previous = store.without_retired(store.memory(champ.batch_id if champ else None,
                                                      params.memory.budget_bytes, _threshold(params)))
        cache, sha = frame_cache(params), dict(zip(zip(ranked["batch_id"], ranked["video"]), ranked["sha256"]))
        memory = build_memory(
            previous, ranked, lambda b, v: cache.frames(store.batch_dir(b) / v, sha[b, v]), target,
            budget_bytes=params.memory.budget_bytes, threshold=_threshold(params),
            batches=tuple(sorted(set(previous.batches) | set(selection["batches"]))),
            frame_policy=frame_policy(params.memory.frames, params.model.num_segments),
        )
        for line in describe_choice(memory):
            print(f"[vidcil] {batch_id} memory: {line}", file=sys.stderr, flush=True)
    version = data_versions.UNTRACKED
    if params.versioning.dvc:
        version = data_versions.track([memory.root], push=params.versioning.push,
                                   remote=params.versioning.remote)[str(Path(memory.root).resolve())]
    e = memory.entries
    return write_output(params, batch_id, "extract_keyframes", {
        "batch_id": batch_id, "memory_version": version, "memory_path": str(memory.root),
        "memory_hash": memory.content_hash,
        "memory_bytes": memory.bytes_on_disk, "budget_bytes": memory.budget_bytes,
        "exemplars": len(e), "keyframes": int(sum(len(k) for k in e["keyframes"])),
        "per_class": e.groupby("label").size().to_dict(), "batches": list(memory.batches),
        "chosen": per_class_summary(e), "unrepresented": memory.unrepresented,
    })


# -- 4. distil -------------------------------------------------------------------------------

def class_names_for(store: Store, champ, pending: list[str]) -> list[str]:
    """The champion's classes, then new classes in arrival order (sorted within a batch)."""
    names = list(champ.class_names) if champ else []
    for b in pending:
        names += [c for c in sorted(set(store.manifest(b)["label"])) if c not in names]
    return names


def distil(params: Params, batch_id: str) -> dict:
    """Train the student on the pending batches + memory, distilling from the champion.

    A checkpoint after every epoch (``runs/<batch>/distil_checkpoint.pt``): a rerun or an Airflow
    retry of a killed distil resumes after its last finished epoch, provided it would train on the
    same data from the same teacher with the same settings (else it starts over).

    Under ``torchrun`` every process trains its share of each batch (DDP, ``vidcil.core.distributed``);
    rank 0 alone logs to MLflow and writes the checkpoint, the model and the output.
    """
    import torch

    from vidcil.core import distributed

    torch.set_num_threads(params.train.threads)
    group = distributed.setup()
    try:
        return _distil(params, batch_id, group)
    finally:
        distributed.teardown()


def _distil(params: Params, batch_id: str, group: distributed.ProcessGroup) -> dict:
    from vidcil.core.learner import batch_epochs, did_not_learn, holdout, learn_batch, make_student
    from vidcil.core.training import load_training_checkpoint

    store, champ = _store(params), champion(params)
    pending = pending_batches(store, batch_id, champ)
    class_names = class_names_for(store, champ, pending)
    memory = store.memory(batch_id, params.memory.budget_bytes, _threshold(params))
    refs, held = holdout(store.refs(store.rows(pending, "train"), class_names),
                         params.train.convergence.validation_fraction, params.train.seed)
    replayed = store.memory_refs(memory, class_names) if params.memory.replay else []
    data = clip_dataset(params, refs + replayed, train=True)
    validation = clip_dataset(params, held, train=False) if held else None
    scored_memory = clip_dataset(params, replayed, train=False) if held and replayed else None

    teacher = None
    if champ is not None:
        teacher, _ = mlflow_registry.load_version(params.mlflow.model_name, champ.version)
    student = make_student(teacher, len(class_names), model=params.model, mean=params.data.mean,
                           std=params.data.std, seed=params.train.seed, student=params.student)
    epochs = batch_epochs(teacher.arch if teacher is not None else None, student.arch, params.train)

    checkpoint = run_dir(params, batch_id) / "distil_checkpoint.pt"
    fingerprint = _training_fingerprint(params, champ, class_names, refs + replayed, epochs)
    finished = _finished_distil(params, batch_id, fingerprint)
    if finished is not None:  # a rerun (e.g. after a kill in register): the model is there, not retrained
        return finished if group.is_main else {"batch_id": batch_id, "rank": group.rank}
    start = time.perf_counter()
    label = f"{batch_id} {'distil' if teacher else 'train'}"
    resumed = int((load_training_checkpoint(checkpoint, fingerprint) or {}).get("epoch", 0))
    run_id = _batch_run(params, batch_id, fingerprint, resuming=resumed > 0) if group.is_main else None

    def epoch_done(epoch: int, row: dict) -> None:
        progress.epoch_done(epoch, row)
        mlflow.log_metrics({f"train_{k}": v for k, v in row.items()}, step=epoch)  # live in the UI

    # Training runs inside the batch's MLflow run (register adds the model to it), with system metrics.
    with (mlflow.start_run(run_id=run_id, log_system_metrics=True) if group.is_main else nullcontext()), \
            (EpochProgress(label, epochs, len(data), start_epoch=resumed) if group.is_main
             else nullcontext()) as progress:
        result = learn_batch(
            student, data, teacher=teacher, distil=params.distil, train_options=params.train,
            epochs=epochs, seed=params.train.seed, on_epoch=epoch_done, checkpoint=checkpoint, fingerprint=fingerprint,
            validation=validation, memory=scored_memory, group=group, **train_options(params),
        )
    wall = time.perf_counter() - start
    if not group.is_main:
        return {"batch_id": batch_id, "rank": group.rank}  # rank 0 writes the step's output
    config = mlflow_registry.model_config(student, class_names, params.model.dropout, params.model.shift_div,
                                   params.data.input_size)
    mlflow_registry.save_checkpoint(student.cpu(), config, run_dir(params, batch_id) / "model")
    return write_output(params, batch_id, "distil", {
        "fingerprint": fingerprint, "weights_sha256": mlflow_registry.weights_digest(run_dir(params, batch_id) / "model"),
        "batch_id": batch_id, "teacher_version": champ.version if champ else None,
        "pending_batches": pending, "class_names": class_names, "train_clips": len(data),
        "memory_clips": len(memory.entries), "epochs": result.epochs, "max_epochs": epochs,
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "validation_clips": len(held), "did_not_learn": did_not_learn(result, len(class_names)),
        "optimizer_steps": result.steps, "classifier_correction": result.correction,
        "resumed_from_epoch": result.resumed_from_epoch, "train_seconds": round(wall, 1),
        "history": result.history, "model_parameters": sum(p.numel() for p in student.parameters()),
        "run_id": run_id, "processes": group.world,
    })


def _finished_distil(params: Params, batch_id: str, fingerprint: str) -> dict | None:
    """This batch's distil output, when it trained with this very recipe, teacher and data and its
    model is on disk unchanged; else None (train)."""
    try:
        done = read_output(params, batch_id, "distil")
        same = (done.get("fingerprint") == fingerprint and
                done.get("weights_sha256") == mlflow_registry.weights_digest(run_dir(params, batch_id) / "model"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    return write_output(params, batch_id, "distil", done | {"reused": True}) if same else None


def _batch_run(params: Params, batch_id: str, fingerprint: str, *, resuming: bool) -> str:
    """The MLflow run of this batch's training: when resuming a checkpoint, the run that training
    started in (a killed distil's); else a new one. Recorded in ``runs/<batch>/train_run.json``."""
    record = run_dir(params, batch_id) / "train_run.json"
    if resuming and record.is_file():
        known = json.loads(record.read_text())
        if known.get("fingerprint") == fingerprint:
            return known["run_id"]
    run = mlflow_registry.client().create_run(
        mlflow.get_experiment_by_name(params.mlflow.experiment).experiment_id,
        tags={f"{mlflow_registry.TAG}batch_id": batch_id, "mlflow.runName": batch_id,
              f"{mlflow_registry.TAG}project": project_id(params)})
    record.write_text(json.dumps({"run_id": run.info.run_id, "fingerprint": fingerprint}))
    return run.info.run_id


def _training_fingerprint(params: Params, champ, class_names: list[str], refs, epochs: int) -> str:
    """What a checkpoint must match to be resumed: the teacher, the data (by content) and the recipe."""
    recipe = {k: params.typed().model_dump(mode="json")[k] for k in ("model", "student", "train", "distil", "data")}
    for knob in ("num_workers", "cache_max_bytes", "pin_memory"):  # they do not change what is learnt
        del recipe["data"][knob]
    return hashlib.sha256(json.dumps({
        "teacher": champ.version if champ else None, "classes": class_names, "epochs": epochs, "recipe": recipe,
        "data": [(r.batch_id, r.video, r.sha256 or str(r.path), r.label) for r in refs],
    }, sort_keys=True).encode()).hexdigest()


# -- 5. evaluate -----------------------------------------------------------------------------

def _accuracy_row(model, store: Store, columns: list[str], class_names: list[str], params: Params):
    """Accuracy on each accepted batch's test videos ([columns]), on all of them, and the confusion
    matrix over ``class_names`` + classes the model does not know (never predicted)."""
    from vidcil.core.learner import accuracy_by_group

    rows = store.rows(columns, "test")
    names = class_names + sorted(set(rows["label"]) - set(class_names))
    data = clip_dataset(params, store.refs(rows, names), train=False)
    per_batch, overall, predicted = accuracy_by_group(model, data, rows["batch_id"].to_numpy(), columns,
                                                      **loader_options(params))
    return per_batch, overall, {"classes": names,
                                "matrix": metrics.confusion_matrix(data.labels, predicted, len(names)).tolist()}


def evaluate(params: Params, batch_id: str) -> dict:
    """Challenger and champion on the test videos of every accepted batch so far."""
    import torch

    torch.set_num_threads(params.train.threads)
    store, champ = _store(params), champion(params)
    columns = store.accepted(batch_id)
    challenger, config = mlflow_registry.load_checkpoint(run_dir(params, batch_id) / "model")
    row, acc_all, confusion = _accuracy_row(challenger, store, columns, config["class_names"], params)
    per_class = metrics.per_class_accuracy(np.array(confusion["matrix"]))
    result = {"batch_id": batch_id, "weights_sha256": mlflow_registry.weights_digest(run_dir(params, batch_id) / "model"),
              "columns": columns, "challenger_row": row, "challenger_accuracy": acc_all,
              "confusion": confusion, "per_class_accuracy": dict(zip(confusion["classes"], per_class.tolist()))}
    if champ is not None:
        model, _ = mlflow_registry.load_version(params.mlflow.model_name, champ.version)
        c_row, c_all, _ = _accuracy_row(model, store, columns, champ.class_names, params)
        result.update(champion_version=champ.version, champion_row=c_row, champion_accuracy=c_all,
                      old_columns=store.accepted(champ.batch_id))
    # The service history: the accuracy matrix as it stood after the previous decided batch.
    history, _ = service_history(latest_record(columns, batch_id), columns)
    matrix = metrics.accuracy_matrix(history + [row], len(columns))
    memory = read_output(params, batch_id, "extract_keyframes")
    result.update(
        history=history,
        accuracy_all_seen=acc_all,
        accuracy_new=row[-1],
        forgetting_first=metrics.forgetting_first(matrix),
        mean_forgetting=metrics.mean_forgetting(matrix),
        backward_transfer=metrics.backward_transfer(matrix),
        memory_bytes=memory["memory_bytes"],
        did_not_learn=read_output(params, batch_id, "distil").get("did_not_learn"),
    )
    return write_output(params, batch_id, "evaluate", result)


# -- 6. register -----------------------------------------------------------------------------

def register(params: Params, batch_id: str) -> dict:
    """Log the run (params, metrics, plots, model) and register a version with lineage tags."""
    name = params.mlflow.model_name
    valid, memory = read_output(params, batch_id, "validate"), read_output(params, batch_id, "extract_keyframes")
    trained, ev = read_output(params, batch_id, "distil"), read_output(params, batch_id, "evaluate")
    checkpoint = run_dir(params, batch_id) / "model"
    weights = mlflow_registry.weights_digest(checkpoint)
    if weights != ev.get("weights_sha256"):
        raise RuntimeError(f"batch {batch_id}: the model in {checkpoint} is not the one evaluate measured "
                           "(it was retrained since); run evaluate again, then register")
    existing = mlflow_registry.version_for_batch(name, batch_id)
    if existing is not None:
        same = mlflow_registry.tag(existing, "weights_sha256") == weights
        if same or mlflow_registry.tag(existing, "decision"):  # re-run: registered (or decided) already
            return write_output(params, batch_id, "register", {"batch_id": batch_id, "version": existing.version,
                                                               "run_id": existing.run_id, "reused": True})
        # Registered for this batch, undecided, other weights than those evaluated (a retrain after a
        # kill, two writers before the lock): never decide on it.
        mlflow_registry.set_tags(name, existing.version, {
            "decision": mlflow_registry.DISCARDED,
            "discard_reason": f"its weights are not the model evaluated for batch {batch_id} (sha256 "
                              f"{weights[:12]}); a new version is registered for the batch"})
        mlflow_registry.describe(name, existing.version, f"batch {batch_id}: discarded (not the model evaluated)")
        if (a := mlflow_registry.version_by_alias(name, mlflow_registry.CHALLENGER)) and a.version == existing.version:
            mlflow_registry.client().delete_registered_model_alias(name, mlflow_registry.CHALLENGER)
    example = _input_example(params, batch_id)
    with mlflow.start_run(run_id=trained.get("run_id")) as run:  # the run distil trained in
        mlflow.log_params({f"{section}.{k}": _param_value(v) for section, values in params.model_dump(mode="json").items()
                           if section not in ("paths", "mlflow", "benchmark", "distil") for k, v in values.items()}
                          | {f"distil.{k}": _param_value(v) for k, v in (params.model_dump(mode="json")["distil"] or {}).items()})
        mlflow.log_metrics({k: ev[k] for k in ("accuracy_all_seen", "accuracy_new", "forgetting_first",
                                                "mean_forgetting", "backward_transfer", "memory_bytes")}
                           | {"optimizer_steps": trained["optimizer_steps"], "train_seconds": trained["train_seconds"],
                              "train_processes": trained.get("processes", 1)})
        for step in ("validate", "select_exemplars", "extract_keyframes", "distil", "evaluate"):
            mlflow.log_artifact(str(run_dir(params, batch_id) / f"{step}.json"), "steps")
        _log_batch_data(params, batch_id, valid, ev)
        model_uri = mlflow_registry.log_model(checkpoint, example)
        tags = {
            "batch_id": batch_id, "data_hash": valid["data_hash"], "data_version": valid["data_version"],
            "test_index_version": valid["test_index_version"], "memory_version": memory["memory_version"],
            "memory_path": memory["memory_path"], "memory_hash": memory["memory_hash"],
            "memory_bytes": memory["memory_bytes"],
            "code_version": code_version(mlflow_registry.PROJECT_ROOT), "teacher_version": trained["teacher_version"] or "none",
            "pending_batches": ",".join(trained["pending_batches"]),
            "class_names": json.dumps(trained["class_names"]),
            "accuracy_all_seen": f"{ev['accuracy_all_seen']:.4f}", "mean_forgetting": f"{ev['mean_forgetting']:.4f}",
            "weights_sha256": weights,
        }
        version = mlflow_registry.register(model_uri, name, tags)
        mlflow_registry.client().set_registered_model_alias(name, mlflow_registry.CHALLENGER, version.version)
    return write_output(params, batch_id, "register", {"batch_id": batch_id, "version": version.version,
                                                       "run_id": run.info.run_id, "reused": False})


def _param_value(value):
    """A param as MLflow keeps it, the same text however the params were read (YAML sorts mappings'
    keys, code does not): a rerun into the same run logs equal values, which MLflow allows."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _log_batch_data(params: Params, batch_id: str, valid: dict, ev: dict) -> None:
    """The batch as the run's training dataset (digest: its DVC version), per-class accuracy, confusion."""
    store = _store(params)
    version = valid["data_version"] if valid["data_version"] != data_versions.UNTRACKED else valid["data_hash"]
    dataset = mlflow.data.from_pandas(store.manifest(batch_id), source=str(store.batch_dir(batch_id).resolve()),
                                      name=f"batch {batch_id}", digest=str(version)[:36], targets="label")
    mlflow.log_input(dataset, context="training", tags={"dvc_version": str(version)})
    confusion = ev.get("confusion")
    if confusion:
        mlflow.log_metrics({f"accuracy_class/{mlflow_registry.metric_key(c)}": a
                            for c, a in ev["per_class_accuracy"].items() if a == a})  # NaN: no test clip
        mlflow.log_dict(confusion, "evaluation/confusion_matrix.json")
        fig = plots.confusion_matrix(confusion["classes"], confusion["matrix"], f"after {batch_id}: all seen classes")
        mlflow.log_figure(fig, "plots/confusion_matrix.png")
        plots.close(fig)


def _input_example(params: Params, batch_id: str) -> np.ndarray:
    """One test clip as the model is served it: float32 ``[1, T, 3, S, S]`` in [0, 1]."""
    store = _store(params)
    rows = store.rows([batch_id], "test").iloc[:1]
    x, _ = clip_dataset(params, store.refs(rows, sorted(set(rows["label"]))), train=False)[0]
    return x[None].numpy()


# -- 7. gates, then promote or hold ---------------------------------------------------------

def gates(params: Params, batch_id: str) -> dict:
    """Evaluate the promotion gates on the registered challenger; record the result on the version."""
    name = params.mlflow.model_name
    reg = read_output(params, batch_id, "register")
    version = mlflow_registry.client().get_model_version(name, reg["version"])
    if mlflow_registry.tag(version, "decision"):  # re-run: decided already, report what was decided
        reasons = json.loads(mlflow_registry.tag(version, "gate_reasons", "[]"))
        return write_output(params, batch_id, "gates", {
            "batch_id": batch_id, "version": version.version, "passed": mlflow_registry.tag(version, "decision") == "promoted",
            "reasons": reasons, "checks": json.loads(mlflow_registry.tag(version, "gates", "{}")), "reused": True})
    ev = read_output(params, batch_id, "evaluate")
    if mlflow_registry.tag(version, "weights_sha256") != ev.get("weights_sha256"):
        raise RuntimeError(f"batch {batch_id}: version {version.version} holds other weights than the model evaluate "
                           "measured; run register again (it registers the evaluated model)")
    decision = evaluate_gates(ev, params.gates, params.memory.budget_bytes)
    mlflow_registry.set_tags(name, version.version, {"gate_reasons": json.dumps(decision.reasons),
                                              "gates": json.dumps(decision.checks)})
    return write_output(params, batch_id, "gates", {
        "batch_id": batch_id, "version": version.version, "passed": decision.passed,
        "reasons": decision.reasons, "checks": decision.checks, "reused": False})


def promote(params: Params, batch_id: str) -> dict:
    """The gates passed: move ``champion`` to the challenger and record the move."""
    return _decide(params, batch_id, promoted=True)


def hold(params: Params, batch_id: str) -> dict:
    """A gate failed: ``champion`` stays; the reasons stay on the version; the batch stays pending."""
    return _decide(params, batch_id, promoted=False)


def _decide(params: Params, batch_id: str, promoted: bool) -> dict:
    name = params.mlflow.model_name
    reg, gate = read_output(params, batch_id, "register"), read_output(params, batch_id, "gates")
    if gate["passed"] != promoted:
        raise ValueError(f"batch {batch_id}: gates {'passed' if gate['passed'] else 'failed'}, "
                         f"so it must be {'promoted' if gate['passed'] else 'held'}, not the other")
    version = mlflow_registry.client().get_model_version(name, reg["version"])
    decided = mlflow_registry.tag(version, "decision")
    if decided:  # re-run: already decided, change nothing
        return write_output(params, batch_id, "promote" if promoted else "hold", {
            "batch_id": batch_id, "version": version.version, "decision": decided,
            "reasons": gate["reasons"], "reused": True})
    ev = read_output(params, batch_id, "evaluate")
    # The champion evaluate compared with (not the alias now: a kill after the alias moved left it on this version)
    previous = ev.get("champion_version")
    if promoted:  # recorded first: a kill right after the alias moves must not make this version the teacher
        mlflow_registry.set_tags(name, version.version, {"promoting_from": previous or "none"})
        mlflow_registry.client().set_registered_model_alias(name, mlflow_registry.CHAMPION, version.version)
        row, acc_all, service_version = ev["challenger_row"], ev["challenger_accuracy"], version.version
    else:  # the champion stays in service; its row is what users get after this batch
        row, acc_all = ev.get("champion_row", [0.0] * len(ev["columns"])), ev.get("champion_accuracy", 0.0)
        service_version = previous
    record = _stream_record(ev, row, acc_all, batch_id, version.version, service_version, promoted, gate["reasons"])
    decision = "promoted" if promoted else "held"
    mlflow_registry.set_tags(name, version.version, {
        "decision": decision, "previous_champion": previous or "none"})
    why = "all gates passed" if promoted else "; ".join(gate["reasons"]) or "a gate failed"
    mlflow_registry.describe(name, version.version, (
        f"batch {batch_id}: accuracy {ev['challenger_accuracy']:.3f} on {len(ev['confusion']['classes'])} classes "
        f"seen so far, mean forgetting {ev['mean_forgetting']:+.3f}; {decision} ({why})"))
    with mlflow.start_run(run_id=reg["run_id"]):
        mlflow.log_dict(record, "stream.json")
        mlflow.log_metrics({f"gate_{k}": float(v["passed"]) for k, v in gate["checks"].items()})
        for fig, plot in ((plots.accuracy_matrix(record), "accuracy_matrix"),
                          (plots.stream_curves(record), "accuracy_memory_vs_batch")):
            mlflow.log_figure(fig, f"plots/{plot}.png")
            plots.close(fig)
        mlflow.set_tag(f"{mlflow_registry.TAG}decision", decision)
    # Decided: the training checkpoint (kept so that a rerun before now did not retrain) has done its job.
    (run_dir(params, batch_id) / "distil_checkpoint.pt").unlink(missing_ok=True)
    return write_output(params, batch_id, "promote" if promoted else "hold", {
        "batch_id": batch_id, "version": version.version, "decision": decision,
        "reasons": gate["reasons"], "champion_version": service_version, "reused": False})


def service_history(record: dict | None, columns: list[str]) -> tuple[list[list[float]], list[dict]]:
    """The accuracy matrix and per-batch rows of an earlier service record, restricted to ``columns``
    (the batches in the stream now): a batch retired since leaves its row and its column."""
    if not record:
        return [], []
    keep = [j for j, c in enumerate(record["columns"]) if c in columns]
    rows = [(r, b) for r, b in zip(record["matrix"], record["batches"]) if b["batch_id"] in columns]
    return [[r[j] for j in keep if j < len(r)] for r, _ in rows], [b for _, b in rows]


def _stream_record(ev, row, acc_all, batch_id, version, service_version, promoted, reasons) -> dict:
    """The service record after this batch: accuracy matrix and per-batch summary rows (the model in
    service's figures; the challenger's accuracy and, when held, the gates' reasons beside them)."""
    _, before = service_history(latest_record(ev["columns"], batch_id), ev["columns"])
    matrix = ev["history"] + [row]
    A = metrics.accuracy_matrix(matrix, len(ev["columns"]))
    summary = before + [{
        "batch_id": batch_id, "version": version, "promoted": promoted, "champion_version": service_version,
        "accuracy_all_seen": acc_all, "accuracy_new": row[-1],
        "forgetting_first": metrics.forgetting_first(A), "mean_forgetting": metrics.mean_forgetting(A),
        "backward_transfer": metrics.backward_transfer(A), "memory_bytes": ev["memory_bytes"],
        "challenger_accuracy": ev["challenger_accuracy"], "reasons": list(reasons),
    }]
    aia = metrics.average_incremental_accuracy([s["accuracy_all_seen"] for s in summary])
    return {"columns": ev["columns"], "matrix": matrix, "batches": summary,
            "average_incremental_accuracy": aia}
