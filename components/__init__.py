"""One entrypoint per pipeline step: ``python -m components.<step> BATCH_ID``.

Inputs and outputs are paths, the MLflow registry and small JSON; the logic lives in ``vidcil``.
Exit status: 0 done, 3 batch rejected (nothing downstream may run), 4 batch set aside (retired, or
failed ``orchestration.max_attempts`` times: no step runs for it again), 1 any other failure.

Options for container runners (the Kubeflow pipeline, ``pipelines/``): ``--project-dir`` (the project
folder, e.g. the claim's mount; params.yaml paths are relative to it), ``--output-file PATH`` (the
step's JSON output, also written there) and ``--output-field KEY=PATH`` (one field of it, as JSON:
an output parameter such as the gates' ``passed``).

Under ``torchrun`` (``torchrun --nproc-per-node N -m components.distil BATCH_ID``) every process runs
the step and rank 0 alone writes its output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REJECTED_EXIT_CODE = 3
SET_ASIDE_EXIT_CODE = 4


def _field(text: str) -> tuple[str, str]:
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        raise argparse.ArgumentTypeError(f"expected KEY=PATH, got {text!r}")
    return key, path


def _write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def run_component(step: str, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"components.{step}")
    parser.add_argument("batch_id")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project-dir", help="run in this folder (default: the current one)")
    parser.add_argument("--output-file", help="also write the step's JSON output here")
    parser.add_argument("--output-field", type=_field, action="append", default=[], metavar="KEY=PATH",
                        help="write one field of the output, as JSON, to PATH (repeatable)")
    args = parser.parse_args(argv)
    if args.project_dir:
        os.chdir(args.project_dir)

    from vidcil.config import Params
    from vidcil.io.contract import BatchRejected, BatchSetAside, ServiceUnavailable
    from vidcil.io.project_lock import ProjectBusy
    from vidcil.pipeline.runner import run_step

    try:
        params = Params.load(args.params)
    except (FileNotFoundError, ValueError) as e:  # the file and the fields to fix, without a traceback
        sys.exit(f"components.{step}: {e}")
    try:
        out = run_step(params, step, args.batch_id)
    except BatchRejected as e:
        print(f"batch {args.batch_id} rejected: {e}", file=sys.stderr)
        sys.exit(REJECTED_EXIT_CODE)
    except BatchSetAside as e:
        print(f"components.{step}: {e}", file=sys.stderr)
        sys.exit(SET_ASIDE_EXIT_CODE)
    except (ProjectBusy, ServiceUnavailable) as e:  # another writer, a service down: one line; a retry comes later
        sys.exit(f"components.{step}: {e}")
    if os.environ.get("RANK", "0") != "0":  # one of torchrun's processes: rank 0 writes the output
        return
    text = json.dumps(out, default=str)
    if args.output_file:
        _write(args.output_file, text)
    for key, path in args.output_field:
        if key not in out:
            sys.exit(f"components.{step}: its output has no field {key!r}; fields: {', '.join(out)}")
        _write(path, json.dumps(out[key], default=str))
    print(text)
