"""MLflow: one run per stage with params, per-epoch metrics and tags; FAILED on error; off-switch."""

import pytest

from repro.config import TrackingConfig
from repro.tracking import tracked_run, tracking_uri


@pytest.fixture
def store(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("REPRO_TRACKING", raising=False)
    return tmp_path


def client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def test_a_tracked_stage_lands_in_the_sqlite_store_with_params_metrics_and_tags(store):
    with tracked_run(
        TrackingConfig(),
        stage="train@x",
        run_name="x/gon",
        params={"train.lr": 1e-4},
        tags={"profile": "tiny"},
    ) as tracker:
        for epoch in (1, 2, 3):
            tracker.log_metrics({"train_mse_per_pixel": 1.0 / epoch}, step=epoch)
    assert tracking_uri().startswith("sqlite:////") and (store / "mlflow.db").exists()
    run = client().get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.0001"
    assert run.data.tags["stage"] == "train@x" and run.data.tags["profile"] == "tiny"
    assert "git_commit" in run.data.tags
    history = client().get_metric_history(tracker.run_id, "train_mse_per_pixel")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]


def test_a_failing_stage_is_marked_failed_with_the_reason(store):
    with (
        pytest.raises(RuntimeError),
        tracked_run(TrackingConfig(), stage="s", run_name="r", params={}) as tracker,
    ):
        raise RuntimeError("diverged at epoch 2")
    run = client().get_run(tracker.run_id)
    assert run.info.status == "FAILED" and "diverged at epoch 2" in run.data.tags["error"]


def test_tracking_can_be_switched_off_by_environment(store, monkeypatch):
    monkeypatch.setenv("REPRO_TRACKING", "off")
    with tracked_run(TrackingConfig(), stage="s", run_name="r", params={}) as tracker:
        tracker.log_metrics({"a": 1.0})
    assert tracker.run_id is None and not (store / "mlflow.db").exists()
