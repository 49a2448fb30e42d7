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


def test_experiments_open_on_the_runs_table_in_the_mlflow_ui(store):
    """MLflow 3 picks an experiment's first view by its kind tag: model training, not GenAI."""
    kw = {"params": {}, "tags": {}}
    with tracked_run(
        TrackingConfig(), stage="a", run_name="a", experiment="study/a", **kw
    ) as tracker:
        pass
    exp_id = client().get_run(tracker.run_id).info.experiment_id
    assert client().get_experiment(exp_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    # An experiment created without the tag (an older store) gets it on its next run.
    old = client().create_experiment("study/old")
    with tracked_run(TrackingConfig(), stage="b", run_name="b", experiment="study/old", **kw):
        pass
    assert client().get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


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


KILL_ITSELF = """
import os, signal
from repro.config import TrackingConfig
from repro.tracking import tracked_run
with tracked_run(TrackingConfig(), stage="train@x", run_name="x/gon", params={}) as t:
    t.log_metrics({"loss": 1.0}, step=1)
    os.kill(os.getpid(), signal.SIGKILL)  # no handler, no finally: the run cannot close itself
"""


@pytest.mark.stage
def test_a_run_killed_outright_is_marked_killed_when_its_stage_runs_again(store):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", KILL_ITSELF], cwd=store, capture_output=True)
    assert proc.returncode == -9, proc.stderr
    (orphan,) = client().search_runs([client().get_experiment_by_name("gon-repro").experiment_id])
    assert orphan.info.status == "RUNNING"

    with tracked_run(TrackingConfig(), stage="train@other", run_name="y", params={}):
        pass  # another stage: leaves it alone
    assert client().get_run(orphan.info.run_id).info.status == "RUNNING"
    with tracked_run(TrackingConfig(), stage="train@x", run_name="x/gon", params={}) as t:
        successor = t.run_id
    killed = client().get_run(orphan.info.run_id)
    assert killed.info.status == "KILLED"
    assert f"the stage ran again as run {successor}" in killed.data.tags["error"]
    assert killed.data.metrics == {"loss": 1.0}  # what it logged is kept
    assert client().get_run(successor).info.status == "FINISHED"


def test_a_live_or_foreign_run_of_the_same_stage_is_left_running(store):
    """Two queue workers may run the same stage at once; another machine's runs are not ours."""
    from repro.tracking import HOST_TAG, PID_TAG, close_abandoned_runs

    c = client()
    with tracked_run(TrackingConfig(), stage="train@x", run_name="a", params={}) as t:
        exp_id = c.get_run(t.run_id).info.experiment_id
    live = c.create_run(exp_id, tags={"stage": "train@x", PID_TAG: "1", HOST_TAG: "x"}).info
    c.set_tag(live.run_id, HOST_TAG, c.get_run(t.run_id).data.tags[HOST_TAG])  # pid 1 lives
    foreign = c.create_run(exp_id, tags={"stage": "train@x", PID_TAG: "999999999", HOST_TAG: "b"})
    assert close_abandoned_runs(c, exp_id, "train@x", "new") == []
    assert c.get_run(live.run_id).info.status == "RUNNING"
    assert c.get_run(foreign.info.run_id).info.status == "RUNNING"


def test_with_a_tracking_server_the_server_places_the_artifacts(tmp_path):
    """A file:// location of whichever machine created the experiment would strand artifacts."""
    from repro.tracking import _experiment_id

    class Client:
        def get_experiment_by_name(self, name):
            return None

        def create_experiment(self, name, artifact_location=None, tags=None):
            self.location = artifact_location
            return "1"

    server, local = Client(), Client()
    _experiment_id(server, "e", tmp_path, "http://127.0.0.1:5055")
    _experiment_id(local, "e", tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert server.location is None
    assert local.location == (tmp_path / "mlartifacts").as_uri()


@pytest.mark.stage
def test_a_killed_but_unreaped_process_counts_as_gone():
    """A zombie still answers kill(pid, 0); its run must be closed all the same."""
    import signal
    import subprocess
    import sys
    import time

    from repro.tracking import _alive

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert _alive(proc.pid)
    proc.send_signal(signal.SIGKILL)
    time.sleep(0.5)  # not waited for: a zombie until proc.wait()
    assert not _alive(proc.pid)
    proc.wait()
    assert not _alive(proc.pid)
