"""Where MLflow logs: the user's ``$MLFLOW_TRACKING_URI`` wins, else the project's ``tracking_uri``."""

import mlflow
import pytest

from vidcil.io import mlflow_registry


def test_two_projects_in_one_process_log_to_their_own_stores(tmp_path, monkeypatch):
    # mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI; that must not pin the next project to the first.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = (f"sqlite:///{tmp_path / name / 'mlflow.db'}" for name in ("a", "b"))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert mlflow_registry.configure(first, "exp") == first
    assert mlflow_registry.configure(second, "exp") == second
    assert mlflow.get_tracking_uri() == second
    assert mlflow.MlflowClient(tracking_uri=second).get_experiment_by_name("exp") is not None


def test_a_users_tracking_uri_wins(tmp_path, monkeypatch):
    server = f"sqlite:///{tmp_path / 'server.db'}"  # stands for the user's server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    assert mlflow_registry.configure(f"sqlite:///{tmp_path / 'project.db'}", "exp") == server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)  # still the user's on the next call
    assert mlflow_registry.configure(f"sqlite:///{tmp_path / 'other.db'}", "exp") == server


def test_an_unreachable_server_is_one_clear_error_within_seconds(tmp_path, monkeypatch):
    """The fault found: MLflow down made a step retry for 4 min 21 s, then print 40 lines."""
    import socket
    import time

    from vidcil.io.contract import ServiceUnavailable
    from vidcil.io.mlflow_registry import configure

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ServiceUnavailable) as e:
        configure(f"http://127.0.0.1:{port}", "vidcil")
    assert time.monotonic() - start < 30
    message = str(e.value)
    assert message.startswith(f"MLflow at http://127.0.0.1:{port} did not answer (") and "\n" not in message
    assert "check that the server is running" in message


def test_a_password_in_the_tracking_uri_never_reaches_the_message(monkeypatch):
    import socket

    from vidcil.io.contract import ServiceUnavailable, redact

    assert redact("https://ana:s3cret@mlflow.example:8443/x") == "https://ana:***@mlflow.example:8443/x"
    assert redact("sqlite:///tmp/mlflow.db") == "sqlite:///tmp/mlflow.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceUnavailable) as e:
        mlflow_registry.configure(f"http://ana:s3cret@127.0.0.1:{port}", "vidcil")
    assert "s3cret" not in str(e.value) and f"http://ana:***@127.0.0.1:{port}" in str(e.value)


def test_no_usage_telemetry_leaves_the_machine():
    """MLflow 3 sends usage telemetry unless told not to; vidcil tells it before MLflow is imported."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI")}
    code = ("import vidcil.io.mlflow_registry, mlflow.telemetry.utils as t, os; "
            "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DVC_NO_ANALYTICS'], "
            "os.environ['GX_ANALYTICS_ENABLED'], t.MLFLOW_DISABLE_TELEMETRY.get())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["true", "1", "False", "True"]
