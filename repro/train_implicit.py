"""The ``implicit`` stage's group: every dataset × method × seed of the implicit study, plus the
super-resolution GON runs on the first dataset.

Each run is a :func:`repro.implicit.implicit_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`): its params, training-loss curve and held-out numbers.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from repro.config import Params, flatten
from repro.engine import Job
from repro.implicit import IMPLICIT_STEP_COST, implicit_name, implicit_run
from repro.records import ImplicitMetrics
from repro.train_recorded import run_recorded_group


def implicit_jobs(params: Params, root: Path) -> list[Job]:
    """dataset × method × seed, then GON at ``low_res`` on the first dataset × seed."""
    cfg = params.implicit

    def job(dataset: str, method: str, seed: int, low_res: bool) -> Job:
        kwargs = {"method": method, "dataset": dataset, "seed": seed, "params": params}
        cost = IMPLICIT_STEP_COST["gon_sr" if low_res else method]
        name = implicit_name(dataset, method, seed, cfg.low_res if low_res else None)
        return Job(name, implicit_run, kwargs | {"root": root, "low_res": low_res}, cost)

    runs = [job(d, m, s, False) for d in cfg.datasets for m in cfg.methods for s in cfg.seeds]
    return runs + [job(cfg.datasets[0], "gon", s, True) for s in cfg.seeds]


def held_out_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The run's held-out numbers as flat MLflow metrics (``test_*``, ``sr_*``)."""
    metrics = {f"test_{k}": v for k, v in record["test"].items()}
    metrics |= {f"sr_{k}": v for k, v in (record["super_resolution"] or {}).items()}
    return metrics | {"train_seconds": record["train_seconds"], "n_params": record["n_params"]}


def train_implicit_group(params: Params, root: Path) -> None:
    """Train and score every run of the study; each run's ``metrics.json`` gets its MLflow id."""
    cfg = params.implicit
    jobs = implicit_jobs(params, root)
    run_recorded_group(
        params,
        jobs,
        root,
        stage="implicit",
        experiment=f"{params.tracking.experiment}/implicit",
        kind=ImplicitMetrics,
        group_params=flatten({"implicit": asdict(cfg)}),
        job_params=("method", "dataset", "seed", "low_res"),
        curve="history",
        curve_x="step",
        held_out=held_out_metrics,
    )
