"""MLflow: one run per stage with params, per-epoch metrics and tags; FAILED on error; off-switch."""

import pytest

from repro.config import TrackingConfig
from repro.tracking import _store_lock, tracked_run, tracking_uri


@pytest.fixture
def store(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("REPRO_TRACKING", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
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


def test_a_stage_in_a_dvc_experiment_copy_logs_into_the_users_store(store, monkeypatch):
    """`dvc exp run --temp/--queue` run stages in .dvc/tmp/exps/<tmp>/ (a copy with its own
    dvc.yaml, deleted afterwards) and set DVC_ROOT to the user's repository: the run lands there."""
    copy = store / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    copy.mkdir(parents=True)
    (copy / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(store))
    monkeypatch.setenv("DVC_EXP_NAME", "queued-exp")
    with tracked_run(TrackingConfig(), stage="s", run_name="r", params={"a": 1}) as tracker:
        tracker.log_metrics({"m": 1.0}, step=1)
    assert (store / "mlflow.db").exists() and not (copy / "mlflow.db").exists()
    assert tracking_uri() == f"sqlite:///{store / 'mlflow.db'}"
    run = client().get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dvc_exp_name"] == "queued-exp"
    assert run.info.artifact_uri.startswith((store / "mlartifacts").as_uri())


def test_the_store_lock_is_exclusive_and_leaves_no_file(store):
    import fcntl
    import os

    uri = tracking_uri()
    lock = store / "mlflow.db.lock"
    with _store_lock(uri):
        assert lock.exists()
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        with pytest.raises(TimeoutError, match="mlflow.db.lock"):
            # A second process would wait; here a zero timeout shows it cannot enter.
            with _store_lock(uri, timeout_s=0.0):
                pass
    assert not lock.exists()
    with _store_lock("http://127.0.0.1:5000"):  # a server needs no lock and gets no file
        pass
