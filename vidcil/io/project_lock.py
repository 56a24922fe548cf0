"""One writer per project: an exclusive lock every runner holds while a step (or a whole batch) writes.

Two ``vidcil run-stream`` at once, a CLI step beside an Airflow task, two retries of one task: each
writes the data store, the DVC index, the step outputs and the MLflow registry, and those writes are
not safe against each other (two versions registered for one batch, a half-moved batch folder). The
lock is ``fcntl.flock`` on ``<paths.runs>/.vidcil.lock``: the kernel releases it when its holder exits,
however it exits (SIGKILL included), so a lock is never left stale; the file says who holds it (pid,
host, command, since when) for the message the next writer prints. Taken again inside the process that
holds it (``run-batch`` holds it across its steps) it is a no-op. Under ``torchrun`` only rank 0 takes
it (the other ranks write nothing). On a network file system flock works where the server supports
it (NFS v4 does); a ReadWriteMany claim on one that does not gives no exclusion — see the README.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

LOCK_NAME = ".vidcil.lock"
_held: dict[Path, int] = {}  # lock path -> depth, in this process


class ProjectBusy(RuntimeError):
    """Another process holds the project's lock and did not let go within the wait."""


def holder(path: Path) -> str:
    """Who holds (or last held) the lock at ``path``, in words."""
    try:
        h = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown process"
    if not h:
        return "an unknown process"
    return f"pid {h.get('pid')} on {h.get('host')} ({h.get('command')}, since {h.get('since')})"


@contextmanager
def project_lock(runs_dir: Path, *, wait_s: float, on_wait: Callable[[str], None] | None = None,
                 poll_s: float = 0.5, report_every_s: float = 30.0) -> Iterator[bool]:
    """Hold the project's write lock in the body; yields True when this call took it (not re-entered).

    Waits up to ``wait_s`` seconds for another holder (``on_wait`` gets a line at once and every
    ``report_every_s``), then raises :class:`ProjectBusy` naming the holder and the fix.
    """
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 holds it for the job
        yield False
        return
    path = (Path(runs_dir) / LOCK_NAME).resolve()
    if _held.get(path):
        _held[path] += 1
        try:
            yield False
        finally:
            _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        start, told = time.monotonic(), None
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait_s:
                    raise ProjectBusy(
                        f"another vidcil writer holds this project ({path}): {holder(path)}; it was not released "
                        f"within {wait_s:.0f} s. Let it finish (or stop it: the lock goes with its process), "
                        "then run again; orchestration.lock_wait_minutes sets how long to wait") from None
                if on_wait is not None and (told is None or waited - told >= report_every_s):
                    on_wait(f"waiting for the project lock ({path}), held by {holder(path)}; "
                            f"{wait_s - waited:.0f} s left")
                    told = waited
                time.sleep(poll_s)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])[:200],
                            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        f.flush()
        _held[path] = 1
        try:
            yield True
        finally:
            _held.pop(path, None)
            f.seek(0)
            f.truncate()  # released: nobody holds it
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def remove_stale_staging(store: Path) -> list[Path]:
    """The ``.<name>.partial`` staging folders and files a killed writer left in ``store``: with the lock
    held nobody else can be writing them, so they are removed (what they held was never published)."""
    store = Path(store)
    stale = [p for pattern in (".*.partial", "*/.*.partial", "*/*/.*.partial") for p in store.glob(pattern)]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    return stale
