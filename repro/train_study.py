"""An ablation study's group of a ``study@<study>`` stage: every cell × method × seed.

Each run is a :func:`repro.studies.study_run` job, in worker processes or one after another as
``train.workers`` says, recorded as a nested MLflow run (:mod:`repro.train_group`). A run that
diverges is a result (its MLflow run FAILED with the reason) and the group goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from repro.config import Params, flatten
from repro.engine import Outcome, mode_of, resolve_workers
from repro.runtime import select_device
from repro.studies import StudyResult, study_jobs, study_result, write_study_results
from repro.train_group import run_tracked_group
from repro.train_run import run_config


def train_study_group(params: Params, study: str, root: Path) -> None:
    """Train and score every run of ``study``; write each cell's records and curves."""
    plan = study_jobs(params, study, root)
    device = select_device(params.train.device)
    workers = resolve_workers(params.train.workers, device.type, len(plan.jobs))
    tags = {"profile": params.profile, "device": str(device), "study": study}
    results: list[StudyResult] = []

    def record(outcome: Outcome, child: Callable[..., str | None]) -> None:
        result = study_result(outcome)  # raises a job's error: a bug, not a divergence
        kw = outcome.job.kwargs
        variant, seed, rec = kw["variant"], kw["seed"], result.record
        ok = rec["status"] == "ok"
        rec["mlflow_run_id"] = child(
            name=outcome.job.name,
            run_params=flatten(run_config(variant.spec(seed), kw["vparams"])),
            tags=tags | {k: str(v) for k, v in variant.describe().items()},
            epochs=outcome.result["history"],
            curve=outcome.result["curve"],
            metrics=flatten({"losses": rec["losses"]}) if ok else None,
            error=None if ok else RuntimeError(rec["error"]),
        )
        results.append(result)

    run_tracked_group(
        params,
        plan.jobs,
        workers=workers,
        stage=f"study@{study}",
        experiment=f"{params.tracking.experiment}/{study}",
        run_params=flatten({"studies": asdict(params.studies)}) | {"workers": workers},
        tags=tags | {"mode": mode_of(workers)},
        record=record,
    )
    write_study_results(root, params, plan, results, device=device)
