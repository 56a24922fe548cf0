"""What people do to a running stream, beside the per-batch steps: retire a batch, roll the champion
back; and what the runners do when a step keeps failing (count its attempts, then set the batch aside).

Every operation holds the project's write lock (:func:`vidcil.pipeline.runner.one_writer`) and is
recorded where the state lives: the data store (``retired.json`` beside the batch's manifest, versioned
by DVC), the MLflow registry (tags and descriptions on the versions concerned) and an MLflow run per
operation (``vidcil.step`` = ``retire`` / ``rollback``) that says who, when and why.
"""

from __future__ import annotations

import getpass
import json
import os
import traceback
from datetime import datetime, timezone

import mlflow

from vidcil.config import Params
from vidcil.io import data_versions, mlflow_registry
from vidcil.io.contract import BatchRejected, BatchSetAside
from vidcil.io.store import Store
from vidcil.pipeline.state import champion, project_id, run_dir

RETIRED, FAILED = "retired", "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


def _log_operation(params: Params, name: str, tags: dict[str, str], record: dict) -> str:
    t = {f"{mlflow_registry.TAG}{k}": str(v) for k, v in tags.items()}
    with mlflow.start_run(run_name=name, tags=t | {f"{mlflow_registry.TAG}project": project_id(params)}) as run:
        mlflow.log_dict(record, f"{tags['step']}.json")
    return run.info.run_id


# -- retire -----------------------------------------------------------------------------------

def retire(params: Params, batch_id: str, reason: str, kind: str = RETIRED) -> dict:
    """Take an accepted batch out of the stream: its videos leave the training set, the memory and the
    test index; the store keeps it (with ``retired.json``) and DVC keeps every earlier version.

    ``kind`` is ``retired`` (a person's decision) or ``failed`` (set aside after ``orchestration.max_attempts``
    failed attempts of one step). A registered, undecided version of the batch is marked with the same
    decision. A corrected copy lands under a new batch id (one that sorts after every accepted batch).
    """
    reason = " ".join(str(reason).split())
    if not reason:
        raise ValueError("say why the batch is retired (--reason): it is kept with the batch and in the registry")
    store = Store(params.paths.store)
    if batch_id not in store.stored():
        raise ValueError(f"batch {batch_id} is not in the data store ({store.batches_dir}); only an accepted batch "
                         f"can be retired (stored: {', '.join(store.stored()) or 'none'})")
    record = store.retirement(batch_id)
    reused = record is not None
    if record is None:  # the marker first: it is what takes the batch out; what follows completes on a rerun
        champ = champion(params)
        record = {"batch_id": batch_id, "kind": kind, "reason": reason, "at": _now(), "by": _who(),
                  "learnt_by_champion": champ.version if champ and champ.batch_id >= batch_id else None}
        store.retire(batch_id, record)
    from vidcil.pipeline.steps import write_test_index  # the steps import torch: only when retiring

    test_index = write_test_index(store)
    result = dict(record, reused=reused)
    if params.versioning.dvc:  # a new version of the batch (with its retired.json); the old one stays in history
        versions = data_versions.track([store.batch_dir(batch_id), test_index],
                                       push=params.versioning.push, remote=params.versioning.remote)
        result["data_version"] = versions[str(store.batch_dir(batch_id).resolve())]
        result["test_index_version"] = versions[str(test_index.resolve())]
    name = params.mlflow.model_name
    version = mlflow_registry.version_for_batch(name, batch_id)
    if version is not None and not mlflow_registry.tag(version, "retired"):
        tags = {"retired": record["reason"], "retired_kind": record["kind"]}
        if not mlflow_registry.tag(version, "decision"):
            tags["decision"] = record["kind"]  # never decided: it is not a candidate any more
        mlflow_registry.set_tags(name, version.version, tags)
        mlflow_registry.describe(name, version.version, f"batch {batch_id}: {record['kind']} ({record['reason']}); "
                                 + (version.description or ""))
    result["version"] = str(version.version) if version is not None else None
    logged = mlflow.search_runs(filter_string=f"tags.`{mlflow_registry.TAG}step` = 'retire' and "
                                f"tags.`{mlflow_registry.TAG}batch_id` = '{batch_id}'", max_results=1)
    if logged.empty:
        result["run_id"] = _log_operation(params, f"{batch_id} {record['kind']}", {
            "step": "retire", "batch_id": batch_id, "kind": record["kind"], "reason": record["reason"],
            "data_version": result.get("data_version", data_versions.UNTRACKED)}, result)
    else:
        result["run_id"] = logged["run_id"].iloc[0]
    return result


# -- a step that keeps failing ------------------------------------------------------------------

def _attempts_file(params: Params, batch_id: str):
    return run_dir(params, batch_id) / "attempts.json"


def attempts(params: Params, batch_id: str) -> dict:
    """Failed attempts per step of ``batch_id`` since the step last succeeded: ``{step: {failures, last_error}}``."""
    path = _attempts_file(params, batch_id)
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_attempts(params: Params, batch_id: str, data: dict) -> None:
    path = _attempts_file(params, batch_id)
    tmp = path.with_name(".attempts.json.partial")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def step_succeeded(params: Params, batch_id: str, step: str) -> None:
    data = attempts(params, batch_id)
    if data.pop(step, None) is not None:
        _write_attempts(params, batch_id, data)


def step_failed(params: Params, batch_id: str, step: str, error: BaseException) -> Exception | None:
    """Count a failed attempt of ``step``. At ``orchestration.max_attempts`` the batch is set aside
    (:func:`retire` with kind ``failed``) and the :class:`BatchSetAside` to raise is returned; a batch not
    in the store yet (``land`` or ``validate`` kept failing) is recorded as rejected instead and a
    :class:`BatchRejected` returned. Before the limit, None."""
    if os.environ.get("RANK", "0") != "0":
        return None
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:400]
    why = f"{type(error).__name__}: {first}"
    data = attempts(params, batch_id)
    entry = data.setdefault(step, {"failures": 0})
    entry.update(failures=entry["failures"] + 1, last_error=why, at=_now(),
                 where=traceback.format_exception(error)[-2].strip()[:400] if error.__traceback__ else "")
    _write_attempts(params, batch_id, data)
    limit = params.orchestration.max_attempts
    if limit == 0 or entry["failures"] < limit or Store(params.paths.store).retirement(batch_id) is not None:
        return None
    reason = f"step {step} failed {entry['failures']} times; last: {why}"
    if batch_id not in Store(params.paths.store).stored():  # never accepted: a rejection, as validation records it
        _log_operation(params, f"{batch_id} validate", {"step": "validate", "batch_id": batch_id,
                                                        "verdict": "rejected", "reason": reason}, {"reason": reason})
        return BatchRejected(f"{reason}. Nothing of it was stored; fix the cause and land it again")
    retire(params, batch_id, reason, kind=FAILED)
    return BatchSetAside(f"batch {batch_id} set aside: {reason}. The stream goes on without it; fix the cause and "
                         f"land a corrected copy under a new batch id (see README, 'When a batch fails')")


def attempt_note(params: Params, batch_id: str, step: str) -> str:
    """The line a runner prints after a failed attempt that did not yet set the batch aside."""
    n, limit = attempts(params, batch_id).get(step, {}).get("failures", 0), params.orchestration.max_attempts
    if not limit:
        return f"{step} of {batch_id} failed (attempt {n}); rerun to retry, or `vidcil retire {batch_id} --reason ...`"
    return (f"{step} of {batch_id} failed (attempt {n} of {limit}); rerun to retry. After {limit} failed attempts "
            f"the batch is set aside and the stream goes on without it; or now: `vidcil retire {batch_id} --reason ...`")


def check_not_set_aside(params: Params, batch_id: str) -> None:
    done = Store(params.paths.store).retirement(batch_id)
    if done is not None:
        raise BatchSetAside(f"batch {batch_id} is {done['kind']} ({done['reason']}); no step runs for it again. "
                            "Land a corrected copy under a new batch id")


# -- rollback ----------------------------------------------------------------------------------

def rollback(params: Params, reason: str, to: str | None = None) -> dict:
    """Move ``champion`` back to ``to`` (default: the champion before the current one), a version that
    was promoted once. Both versions are tagged and described; the batches the rolled-back version
    learnt become pending again, so the next model learns them from the restored one."""
    reason = " ".join(str(reason).split())
    if not reason:
        raise ValueError("say why (--reason): it is kept on both versions and in the rollback's MLflow run")
    name = params.mlflow.model_name
    current = mlflow_registry.version_by_alias(name, mlflow_registry.CHAMPION)
    if current is None:
        raise ValueError(f"model {name} has no champion: there is nothing to roll back")
    target = to or mlflow_registry.tag(current, "previous_champion", "none")
    if target in (None, "none"):
        raise ValueError(f"champion v{current.version} was the first champion: there is no earlier one to go back "
                         "to; give --to VERSION")
    try:
        chosen = mlflow_registry.client().get_model_version(name, str(target))
    except Exception:
        raise ValueError(f"model {name} has no version {target}") from None
    if chosen.version == current.version:
        raise ValueError(f"v{chosen.version} is the champion already")
    if mlflow_registry.tag(chosen, "decision") != "promoted":
        raise ValueError(f"v{chosen.version} was never promoted (decision: {mlflow_registry.tag(chosen, 'decision') or 'none'}); "
                         "only a version that passed the gates and served can be rolled back to")
    store = Store(params.paths.store)
    if (gone := store.retirement(mlflow_registry.tag(chosen, "batch_id"))) is not None:
        raise ValueError(f"v{chosen.version} learnt up to batch {mlflow_registry.tag(chosen, 'batch_id')}, which is "
                         f"{gone['kind']} ({gone['reason']}); choose another version with --to")
    at = _now()
    record = {"from": str(current.version), "to": str(chosen.version), "reason": reason, "at": at, "by": _who(),
              "from_batch": mlflow_registry.tag(current, "batch_id"), "to_batch": mlflow_registry.tag(chosen, "batch_id")}
    record["run_id"] = _log_operation(params, f"rollback v{current.version} -> v{chosen.version}",
                                      {"step": "rollback", "from": current.version, "to": chosen.version,
                                       "reason": reason, "batch_id": record["to_batch"]}, record)
    mlflow_registry.client().set_registered_model_alias(name, mlflow_registry.CHAMPION, chosen.version)
    mlflow_registry.set_tags(name, current.version, {"rolled_back": json.dumps(record)})
    mlflow_registry.set_tags(name, chosen.version, {"restored": json.dumps(record)})
    mlflow_registry.describe(name, current.version, f"rolled back to v{chosen.version} at {at} ({reason}); "
                             + (current.description or ""))
    mlflow_registry.describe(name, chosen.version, f"champion again from {at} (rollback from v{current.version}: "
                             f"{reason}); " + (chosen.description or ""))
    return record


def in_service(params: Params) -> dict | None:
    """The version serving now (``champion``), the batch it learnt up to and, if it got there by a
    rollback, that rollback."""
    v = mlflow_registry.version_by_alias(params.mlflow.model_name, mlflow_registry.CHAMPION)
    if v is None:
        return None
    restored = mlflow_registry.tag(v, "restored")
    return {"version": str(v.version), "batch_id": mlflow_registry.tag(v, "batch_id"),
            "rollback": json.loads(restored) if restored else None}
