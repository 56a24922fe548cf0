"""A throwaway Airflow installation for tests: AIRFLOW_HOME, SQLite metadata DB, a vidcil project."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import TINY_STREAM_PARAMS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The tiny stream of tests/conftest.py; no DVC repository in these throwaway projects.
TINY_PROJECT = TINY_STREAM_PARAMS | {"versioning": {"dvc": False}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(project: Path, home: Path, api_port: int | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING_URI"))}
    env |= {
        "PATH": f"{BIN}:{env['PATH']}", "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # Parsing imports MLflow (~5-14 s on 2 idle cores); a loaded machine passes the 30 s default.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "VIDCIL_PROJECT_DIR": str(project), "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "False",
    }
    if api_port:
        url = f"http://127.0.0.1:{api_port}"
        env |= {"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__BASE_URL": url, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    return env | extra


def make_project(project: Path, **overrides) -> None:
    """A vidcil project folder: tiny params.yaml (MLflow on SQLite in it)."""
    project.mkdir(parents=True, exist_ok=True)
    params = {k: dict(v) for k, v in TINY_PROJECT.items()}
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout
