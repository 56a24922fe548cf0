"""Component: the `hold` step for one batch (see vidcil.pipeline.steps.hold).

    python -m components.hold BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/hold.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("hold")
