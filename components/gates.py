"""Component: the `gates` step (the branch: promote or hold) for one batch (see vidcil.pipeline.steps.gates).

    python -m components.gates BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/gates.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("gates")
