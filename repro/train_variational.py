"""The ``variational`` stage's group: every method × seed of the variational GON vs VAE study.

Each run is a :func:`repro.variational.variational_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`): its params, per-epoch training loss and seconds, the held-out bounds
(``test_*``) and sample-quality numbers (``samples_*``), its files.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from repro.config import Params, flatten
from repro.records import VariationalMetrics
from repro.train_recorded import grid_jobs, run_recorded_group
from repro.variational import VARIATIONAL_STEP_COST, variational_name, variational_run


def train_variational_group(params: Params, root: Path) -> None:
    """Train and score every run of the study; each run's ``metrics.json`` gets its MLflow id."""
    cfg = params.variational
    jobs = grid_jobs(
        variational_run,
        lambda **kw: variational_name(cfg.dataset, **kw),
        VARIATIONAL_STEP_COST,
        params=params,
        root=root,
        method=cfg.methods,
        seed=cfg.seeds,
    )
    run_recorded_group(
        params,
        jobs,
        root,
        stage="variational",
        experiment=f"{params.tracking.experiment}/variational",
        kind=VariationalMetrics,
        group_params=flatten({"variational": asdict(cfg)}),
        job_params=("method", "seed"),
        epochs="history",
        held_out=held_out_metrics,
    )


def held_out_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The held-out bounds (``test_*``) and sample scores (``samples_*``) as flat MLflow metrics
    (a relative score that is undefined, None, is left out)."""
    scores = flatten({"test": record["test"], "samples": record["samples"]})
    return {k.replace(".", "_"): v for k, v in scores.items() if v is not None}
