"""MLflow tracking: the only module that imports mlflow (lazily, so training runs without it).

Conventions (DESIGN.md "MLflow conventions"):

* Backend: a SQLite file ``mlflow.db`` at the repository root, addressed by an **absolute** URI
  (a relative one breaks under ``dvc exp run --temp/--queue``, which run in a temporary copy);
  ``MLFLOW_TRACKING_URI`` overrides it (e.g. a shared tracking server). Artifacts go to
  ``mlartifacts/`` beside it. Both are git- and DVC-ignored.
* One MLflow run per executed DVC stage, in one experiment per study group; params are the
  flattened configuration, logged once; per-epoch metrics carry their epoch as ``step``;
  tags name the stage, git commit, profile, device and params hash.
* ``REPRO_TRACKING=off`` (or ``tracking.enabled: false``) switches tracking off, e.g. on a GPU
  box without mlflow; the stage then records ``mlflow_run_id: null``.
* A stage that fails marks its run FAILED with the error as a tag, so a crash is visible in
  ``mlflow ui``; nothing of the run already logged is lost.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from repro.config import TrackingConfig

ENV_SWITCH = "REPRO_TRACKING"


def repo_root(start: Path | None = None) -> Path:
    """The directory holding ``dvc.yaml`` (the study's root), searched upwards from ``start``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists():
            return candidate
    return here


def tracking_uri(root: Path | None = None) -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root or repo_root()) / 'mlflow.db'}"
    )


def tracking_enabled(cfg: TrackingConfig) -> bool:
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in ("0", "off", "false", "no"):
        return False
    return cfg.enabled


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root or repo_root(),
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """What a stage may record. The base class records nothing (tracking off)."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path) -> None: ...


class MlflowTracker(Tracker):
    def __init__(self, client: Any, run_id: str):
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """All values of one step in one ``log_batch`` call (not one request per value)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self.client.log_artifact(self.run_id, str(path))


def _experiment_id(client: Any, name: str, root: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=(root / "mlartifacts").as_uri())
    except Exception:  # created concurrently by another stage
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def tracked_run(
    cfg: TrackingConfig,
    *,
    stage: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    experiment: str | None = None,
) -> Iterator[Tracker]:
    """One MLflow run around a stage's work; FAILED (with the reason) if the work raises."""
    if not tracking_enabled(cfg):
        yield Tracker()
        return
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise RuntimeError(
            "tracking.enabled is true but mlflow is not installed; install it (pip install -e .) "
            f"or set {ENV_SWITCH}=off to train without tracking"
        ) from err
    root = repo_root()
    client = MlflowClient(tracking_uri=tracking_uri(root))
    exp_id = _experiment_id(client, experiment or cfg.experiment, root)
    all_tags = {"stage": stage, "git_commit": git_commit(root), "mlflow.runName": run_name} | (
        tags or {}
    )
    if os.environ.get("DVC_EXP_NAME"):
        all_tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    from mlflow.entities import Param

    flat = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(flat), 100):  # log_batch accepts at most 100 params per call
        client.log_batch(run_id, params=flat[i : i + 100])
    try:
        yield MlflowTracker(client, run_id)
    except BaseException as err:
        client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
