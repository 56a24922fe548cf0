"""Component: the `select_exemplars` step for one batch (see vidcil.pipeline.steps.select_exemplars).

    python -m components.select_exemplars BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/select_exemplars.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("select_exemplars")
