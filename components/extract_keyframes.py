"""Component: the `extract_keyframes` step for one batch (see vidcil.pipeline.steps.extract_keyframes).

    python -m components.extract_keyframes BATCH_ID [--params params.yaml]

Prints the step's JSON output on stdout (also written to runs/BATCH_ID/extract_keyframes.json).
"""

from components import run_component

if __name__ == "__main__":
    run_component("extract_keyframes")
