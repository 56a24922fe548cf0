"""One entrypoint per pipeline step: ``python -m components.<step> BATCH_ID``.

Inputs and outputs are paths, the MLflow registry and small JSON; the logic lives in ``vidcil``.
Exit status: 0 done, 3 batch rejected (nothing downstream may run), 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import sys

REJECTED_EXIT_CODE = 3


def run_component(step: str, argv: list[str] | None = None) -> None:
    from vidcil.config import Params
    from vidcil.io.contract import BatchRejected
    from vidcil.pipeline.runner import run_step

    parser = argparse.ArgumentParser(prog=f"components.{step}")
    parser.add_argument("batch_id")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        out = run_step(Params.load(args.params), step, args.batch_id)
    except BatchRejected as e:
        print(f"batch {args.batch_id} rejected: {e}", file=sys.stderr)
        sys.exit(REJECTED_EXIT_CODE)
    print(json.dumps(out, default=str))
