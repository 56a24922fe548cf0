"""Component: the `validate` step for one batch (see vidcil.pipeline.steps.validate).

    python -m components.validate BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/validate.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("validate")
