"""vidcil: a video classifier kept current batch by batch.

No usage data leaves the machine: the libraries that phone home by default are told not to, here,
before any of them is imported (a user's own setting of these variables wins).
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow 3 sends usage telemetry by default
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
