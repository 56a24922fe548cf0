"""Component: the `register` step for one batch (see vidcil.pipeline.steps.register).

    python -m components.register BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/register.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("register")
