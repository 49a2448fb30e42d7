"""The ``variational`` stage's group: every method × seed of the variational GON vs VAE study.

Each run is a :func:`repro.variational.variational_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`): its params, per-epoch training loss and seconds, the held-out bounds
(``test_*``) and sample-quality numbers (``samples_*``), its files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from repro.config import Params, flatten
from repro.engine import Job, Outcome, mode_of, resolve_workers
from repro.records import VariationalMetrics
from repro.train_group import run_tracked_group
from repro.variational import VARIATIONAL_STEP_COST, variational_name, variational_run


def train_variational_group(params: Params, root: Path) -> None:
    """Train and score every run of the study; each run's ``metrics.json`` gets its MLflow id."""
    cfg = params.variational
    jobs = [
        Job(
            variational_name(cfg.dataset, m, seed),
            variational_run,
            {"method": m, "seed": seed, "params": params, "root": root},
            VARIATIONAL_STEP_COST.get(m, 1.0),
        )
        for m in cfg.methods
        for seed in cfg.seeds
    ]
    workers = resolve_workers(params.train.workers, "cpu", len(jobs))
    group_params = flatten({"variational": asdict(cfg)})
    tags = {"profile": params.profile, "device": "cpu"}

    def record(outcome: Outcome, child: Callable[..., str | None]) -> BaseException | None:
        kw, rec = outcome.job.kwargs, outcome.result or {}
        metrics = rec.get("metrics", {})
        scores = flatten({"test": metrics.get("test", {}), "samples": metrics.get("samples", {})})
        run_id = child(
            name=outcome.job.name,
            run_params=group_params | {k: kw[k] for k in ("method", "seed")},
            tags=tags,
            epochs=rec.get("history", []),
            metrics={k.replace(".", "_"): v for k, v in scores.items() if v is not None},
            artifacts=rec.get("files", []),
            error=outcome.error,
        )
        if outcome.error is None:
            metrics["mlflow_run_id"] = run_id
            VariationalMetrics(**metrics).write(root / "runs" / outcome.job.name / "metrics.json")
        return outcome.error

    run_tracked_group(
        params,
        jobs,
        workers=workers,
        stage="variational",
        experiment=f"{params.tracking.experiment}/variational",
        run_params=group_params | {"workers": workers},
        tags=tags | {"mode": mode_of(workers)},
        record=record,
    )
