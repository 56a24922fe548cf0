"""One writer per project: real processes contend for the project lock (fcntl.flock)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from tests.conftest import tiny_params
from tests.io.test_validation import good_batch
from vidcil.io.project_lock import LOCK_NAME, ProjectBusy, project_lock, remove_stale_staging
from vidcil.io.store import Store

HOLD = textwrap.dedent("""
    import sys, time
    from vidcil.io.project_lock import project_lock
    with project_lock(sys.argv[1], wait_s=0):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(runs, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(runs), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_told_who_holds_the_project_and_a_killed_holder_frees_it(tmp_path):
    holder = _holder(tmp_path, 60)
    try:
        with pytest.raises(ProjectBusy, match=rf"holds this project .*: pid {holder.pid} on .*since .*"
                                              r"lock_wait_minutes"):
            with project_lock(tmp_path, wait_s=0):
                pass
        lines = []
        start = time.monotonic()
        with pytest.raises(ProjectBusy):
            with project_lock(tmp_path, wait_s=1.0, on_wait=lines.append, report_every_s=10):
                pass
        assert time.monotonic() - start >= 1.0 and len(lines) == 1 and f"pid {holder.pid}" in lines[0]
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock with the process
        holder.wait()
    with project_lock(tmp_path, wait_s=0) as taken:
        assert taken
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with project_lock(tmp_path, wait_s=0) as again:  # re-entered in the holding process: no deadlock
            assert not again
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: nobody named


def test_a_waiting_writer_goes_on_when_the_holder_finishes(tmp_path):
    holder = _holder(tmp_path, 1.5)
    start = time.monotonic()
    with project_lock(tmp_path, wait_s=30, poll_s=0.1) as taken:
        assert taken and time.monotonic() - start >= 1.0  # taken only once the holder let go
    holder.wait()
    assert holder.returncode == 0


def test_what_a_killed_writer_left_staged_is_removed_on_the_next_start(tmp_path):
    store = tmp_path / "store"
    (store / "batches" / ".b004.partial" / "push").mkdir(parents=True)
    (store / "batches" / ".b004.partial" / "push" / "a.mp4").write_bytes(b"half")
    (store / "memory" / "b003").mkdir(parents=True)
    (store / ".test_index.csv.partial").write_text("half")
    (store / "batches" / "b003").mkdir()
    removed = remove_stale_staging(store)
    assert sorted(p.name for p in removed) == [".b004.partial", ".test_index.csv.partial"]
    assert sorted(p.name for p in (store / "batches").iterdir()) == ["b003"]


@pytest.mark.e2e
def test_two_concurrent_validate_steps_store_the_batch_once(tmp_path, monkeypatch):
    """Two `vidcil step validate b000` at once on one project: the second waits for the first, then
    finds the batch stored already; one stored batch, no staging folder, both exit 0."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_params(tmp_path)
    good_batch(params.paths.landing / "b000", seed=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "vidcil.cli", "--params", str(tmp_path / "params.yaml"), "step", "validate", "b000"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert any("waiting for the project lock" in err for _, err in outs)  # one of them waited, and said so
    store = Store(params.paths.store)
    assert store.accepted() == ["b000"] and len(store.manifest("b000")) == 10
    assert not list(params.paths.store.rglob("*.partial"))
