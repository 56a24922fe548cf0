"""Component: the `evaluate` step for one batch (see vidcil.pipeline.steps.evaluate).

    python -m components.evaluate BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/evaluate.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("evaluate")
