"""Component: the `distil` step for one batch (see vidcil.pipeline.steps.distil).

    python -m components.distil BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/distil.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("distil")
