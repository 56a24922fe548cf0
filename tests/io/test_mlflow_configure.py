"""Where MLflow logs: the user's ``$MLFLOW_TRACKING_URI`` wins, else the project's ``tracking_uri``."""

import mlflow

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
