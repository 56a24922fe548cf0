"""Component: the `land` step for one batch (see vidcil.pipeline.steps.land).

    python -m components.land BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/land.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("land")
