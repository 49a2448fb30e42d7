"""The ``transfer`` stage's group: every method × seed of the unseen-class study.

Each run is a :func:`repro.transfer.transfer_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`) holding its unseen- and seen-class test losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from repro.config import Params, flatten
from repro.efficiency import EFFICIENCY_STEP_COST
from repro.engine import Job, Outcome, mode_of, resolve_workers
from repro.records import EfficiencyMetrics
from repro.train_group import run_tracked_group
from repro.transfer import transfer_name, transfer_run

#: The numbers of a run's ``final`` row its MLflow run shows as held-out metrics.
HELD_OUT = ("test_sse_per_image", "seen_test_sse_per_image")


def train_transfer_group(params: Params, root: Path) -> None:
    """Train and score every run; each run's ``metrics.json`` gets its MLflow run id."""
    eff = params.efficiency
    jobs = [
        Job(
            transfer_name(eff.dataset, m, seed),
            transfer_run,
            {"method": m, "seed": seed, "params": params, "root": root},
            EFFICIENCY_STEP_COST.get(m, 1.0),
        )
        for m in eff.methods
        for seed in eff.seeds
    ]
    workers = resolve_workers(params.train.workers, "cpu", len(jobs))
    group_params = flatten({"efficiency": asdict(eff)})
    tags = {"profile": params.profile, "device": "cpu"}

    def record(outcome: Outcome, child: Callable[..., str | None]) -> BaseException | None:
        kw, rec = outcome.job.kwargs, outcome.result or {}
        final = rec.get("metrics", {}).get("final", {})
        run_id = child(
            name=outcome.job.name,
            run_params=group_params | {k: kw[k] for k in ("method", "seed")},
            tags=tags,
            curve=rec.get("curve", []),
            curve_x="images_seen",
            metrics={k: float(final[k]) for k in HELD_OUT if k in final} or None,
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
        stage="transfer",
        experiment=f"{params.tracking.experiment}/efficiency",
        run_params=group_params | {"workers": workers},
        tags=tags | {"mode": mode_of(workers)},
        record=record,
    )
