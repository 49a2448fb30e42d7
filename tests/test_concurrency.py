"""Stages that run at once (``dvc queue start -j 2``, parallel stages) share one MLflow store.

The hard case is a store that does not exist yet: every process that opens it would build the
schema (MLflow runs its alembic migrations unguarded), so without ``repro.tracking``'s lock
they fail with ``duplicate column name`` / ``table ... already exists`` and can leave the store
half-migrated. The processes here are real interpreters started together behind a barrier
(each imports everything first, then waits for a ``go`` file), so their store set-up overlaps.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from repro.config import flatten, load_params, run_spec
from repro.train import run_config
from tests.conftest import ROOT, shrink, stage_env

pytestmark = pytest.mark.stage  # real interpreters started together

N_WORKERS = 4
N_PARAMS = 30
N_STEPS = 40
METRICS = ("loss", "val_loss", "lr")
EXPERIMENT = "concurrency"

# A tracked run in a fresh interpreter: import first, signal ready, wait for `go`, then work.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the slow imports before the barrier)
    from repro.config import TrackingConfig
    from repro.tracking import tracked_run

    i, n_params, n_steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    barrier, experiment = Path(sys.argv[4]), sys.argv[5]
    (barrier / f"ready-{i}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.002)
    params = {f"p{k:02d}": f"{i}-{k}" for k in range(n_params)}
    with tracked_run(
        TrackingConfig(), stage=f"stage@{i}", run_name=f"run-{i}", params=params,
        tags={"worker": str(i)}, experiment=experiment,
    ) as tracker:
        for step in range(n_steps):
            tracker.log_metrics(
                {"loss": i + step / 8, "val_loss": i * 100 + step, "lr": 1.0 / (step + 1)}, step=step
            )
    print(tracker.run_id)
    """
)

# A real stage script behind the same barrier: its heavy imports first, then runpy.
STAGE_RUNNER = textwrap.dedent(
    """
    import runpy, sys, time
    from pathlib import Path
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import repro.train  # noqa: F401
    barrier, ready, script, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    (barrier / ready).touch()
    while not (barrier / "go").exists():
        time.sleep(0.002)
    sys.path.insert(0, str(Path(script).parent))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
    """
)


def _env() -> dict[str, str]:
    env = stage_env(tracking=True)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _start_together(cmds: list[list[str]], cwd: Path, barrier: Path) -> list[tuple[int, str]]:
    """Start the commands, release them at once when all are ready; (exit code, output) each."""
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cmd in cmds
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready-*"))) < len(cmds):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (barrier / "go").touch()
        return [(p.wait(timeout=240), p.stdout.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _check_store(db: Path) -> None:
    """SQLite's own integrity check passes; no experiment name appears twice; lock released."""
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        dupes = con.execute(
            "SELECT name, COUNT(*) FROM experiments GROUP BY name HAVING COUNT(*) > 1"
        ).fetchall()
        assert dupes == []
        leftovers = con.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp%'"
        ).fetchall()
        assert leftovers == []
    assert not db.with_name(db.name + ".lock").exists()


def _failures(results: list[tuple[int, str]]) -> str:
    return "\n\n".join(
        f"--- process {i} exited {rc} ---\n{out[-3000:]}"
        for i, (rc, out) in enumerate(results)
        if rc != 0
    )


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def test_parallel_tracked_runs_share_one_fresh_store_intact(study_dir: Path) -> None:
    db = study_dir / "mlflow.db"
    assert not db.exists()
    cmds = [
        [sys.executable, "-c", WORKER, str(i), str(N_PARAMS), str(N_STEPS), str(study_dir / "b")]
        + [EXPERIMENT]
        for i in range(N_WORKERS)
    ]
    results = _start_together(cmds, study_dir, study_dir / "b")
    assert all(rc == 0 for rc, _ in results), _failures(results)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    by_worker = {run.data.tags["worker"]: run for run in runs}
    assert sorted(by_worker) == [str(i) for i in range(N_WORKERS)] and len(runs) == N_WORKERS
    printed = {out.strip().splitlines()[-1] for _, out in results}
    assert printed == {run.info.run_id for run in runs}
    for i in range(N_WORKERS):
        run = by_worker[str(i)]
        assert run.info.status == "FINISHED"
        assert run.data.params == {f"p{k:02d}": f"{i}-{k}" for k in range(N_PARAMS)}
        expected = {
            "loss": [i + s / 8 for s in range(N_STEPS)],
            "val_loss": [float(i * 100 + s) for s in range(N_STEPS)],
            "lr": [1.0 / (s + 1) for s in range(N_STEPS)],
        }
        for key in METRICS:
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [m.step for m in history] == list(range(N_STEPS)), key
            assert [m.value for m in history] == pytest.approx(expected[key]), key
    _check_store(db)


def test_two_real_train_stages_at_once_land_intact_in_one_store_and_own_run_dirs(
    study_dir: Path, tiny_data_dir: Path
) -> None:
    """Two group stages (nz 8 and nz 4: GON, AE, linear AE each) start together on one store."""
    assert tiny_data_dir == study_dir / "data" / "synthetic"
    params = shrink(load_params(ROOT / "params.yaml"))
    params = dataclasses.replace(
        params,
        model=dataclasses.replace(params.model, nz=[8, 4]),
        train=dataclasses.replace(params.train, workers=1),
    )
    raw = params.to_dict()
    raw["tracking"]["enabled"] = True
    (study_dir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    script = ROOT / "pipelines" / "train.py"
    sizes = (8, 4)
    args = ["--dataset", "synthetic", "--params", "params.yaml"]
    cmds = [
        [sys.executable, "-c", STAGE_RUNNER, str(study_dir / "b"), f"ready-{nz}", str(script)]
        + [*args, "--nz", str(nz)]
        for nz in sizes
    ]
    results = _start_together(cmds, study_dir, study_dir / "b")
    assert all(rc == 0 for rc, _ in results), _failures(results)

    from mlflow.tracking import MlflowClient

    db = study_dir / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name(f"{params.tracking.experiment}/train")
    everything = client.search_runs([exp.experiment_id])
    parents = {
        r.data.tags["stage"]: r for r in everything if "mlflow.parentRunId" not in r.data.tags
    }
    assert sorted(parents) == [f"train@synthetic-{nz}" for nz in sorted(sizes)]
    runs = {r.info.run_name: r for r in everything if "mlflow.parentRunId" in r.data.tags}
    specs = [run_spec(params, "synthetic", m, nz, 0) for nz in sizes for m in params.train.methods]
    assert sorted(runs) == sorted(s.name for s in specs)
    epochs = params.train.epochs
    for spec in specs:
        run = runs[spec.name]
        assert run.info.status == "FINISHED"
        parent = parents[f"train@{spec.dataset}-{spec.nz}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        expected_params = {k: str(v) for k, v in flatten(run_config(spec, params)).items()}
        assert run.data.params == expected_params
        for key in ("train_mse_per_pixel", "val_mse_per_pixel"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), (spec.name, key)
        assert {"n_params", "train_seconds", "losses.batch.test.sse_per_image"} <= set(
            run.data.metrics
        )
        listed = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        assert listed == ["curve.csv", "history.csv", "metrics.json", "recon.png"]
        # Each stage's own outputs are complete and its own.
        run_dir = spec.run_dir(study_dir / "runs")
        assert (spec.model_dir(study_dir / "models") / "model.pt").is_file()
        history = (run_dir / "history.csv").read_text().strip().splitlines()
        assert len(history) == 1 + epochs
        logged = client.download_artifacts(
            run.info.run_id, "history.csv", str(study_dir / spec.name.replace("/", "_"))
        )
        assert Path(logged).read_text() == (run_dir / "history.csv").read_text()
    _check_store(db)
