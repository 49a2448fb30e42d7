"""The ``efficiency`` stage's group: every method × training-set size × seed of the study.

Each run is a :func:`repro.efficiency.efficiency_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from repro.config import Params, flatten
from repro.efficiency import EFFICIENCY_STEP_COST, efficiency_name, efficiency_run
from repro.records import EfficiencyMetrics
from repro.train_recorded import grid_jobs, run_recorded_group


def train_efficiency_group(params: Params, root: Path) -> None:
    """Train and score every run of the study; each run's ``metrics.json`` gets its MLflow id."""
    cfg = params.efficiency
    jobs = grid_jobs(
        efficiency_run,
        lambda **kw: efficiency_name(cfg.dataset, **kw),
        EFFICIENCY_STEP_COST,
        params=params,
        root=root,
        method=cfg.methods,
        train_size=cfg.train_sizes,
        seed=cfg.seeds,
    )
    run_recorded_group(
        params,
        jobs,
        root,
        stage="efficiency",
        experiment=f"{params.tracking.experiment}/efficiency",
        kind=EfficiencyMetrics,
        group_params=flatten({"efficiency": asdict(cfg), "gfe": asdict(params.gfe)}),
        job_params=("method", "train_size", "seed"),
        curve="curve",
        curve_x="images_seen",
    )
