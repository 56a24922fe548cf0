"""Component: the `promote` step for one batch (see vidcil.pipeline.steps.promote).

    python -m components.promote BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/promote.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("promote")
