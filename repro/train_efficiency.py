"""The ``efficiency`` stage's group: every method × training-set size × seed of the study.

Each run is a :func:`repro.efficiency.efficiency_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from repro.config import Params, flatten
from repro.efficiency import EFFICIENCY_STEP_COST, efficiency_name, efficiency_run
from repro.engine import Job, Outcome, mode_of, resolve_workers
from repro.records import EfficiencyMetrics
from repro.train_group import run_tracked_group


def train_efficiency_group(params: Params, root: Path) -> None:
    """Train and score every run of the study; each run's ``metrics.json`` gets its MLflow id."""
    cfg = params.efficiency
    jobs = [
        Job(
            efficiency_name(cfg.dataset, m, n, seed),
            efficiency_run,
            {"method": m, "train_size": n, "seed": seed, "params": params, "root": root},
            EFFICIENCY_STEP_COST.get(m, 1.0),
        )
        for m in cfg.methods
        for n in cfg.train_sizes
        for seed in cfg.seeds
    ]
    workers = resolve_workers(params.train.workers, "cpu", len(jobs))
    group_params = flatten({"efficiency": asdict(cfg), "gfe": asdict(params.gfe)})
    tags = {"profile": params.profile, "device": "cpu"}

    def record(outcome: Outcome, child: Callable[..., str | None]) -> BaseException | None:
        kw, rec = outcome.job.kwargs, outcome.result or {}
        run_id = child(
            name=outcome.job.name,
            run_params=group_params | {k: kw[k] for k in ("method", "train_size", "seed")},
            tags=tags,
            curve=rec.get("curve", []),
            curve_x="images_seen",
            artifacts=rec.get("files", []),
            error=outcome.error,
        )
        if outcome.error is None:
            rec["metrics"]["mlflow_run_id"] = run_id
            EfficiencyMetrics(**rec["metrics"]).write(
                root / "runs" / outcome.job.name / "metrics.json"
            )
        return outcome.error

    run_tracked_group(
        params,
        jobs,
        workers=workers,
        stage="efficiency",
        experiment=f"{params.tracking.experiment}/efficiency",
        run_params=group_params | {"workers": workers},
        tags=tags | {"mode": mode_of(workers)},
        record=record,
    )
