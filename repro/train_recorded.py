"""A stage's group of runs that each write one results record: the data-efficiency, transfer,
variational and implicit stages (the main comparison and the ablations keep their own, richer
bookkeeping in :mod:`repro.train_main` and :mod:`repro.train_study`).

Each job (:mod:`repro.engine`) returns ``{"metrics": <record fields>, "files": [...], ...}`` and
has already written its files; the stage process, which alone owns the MLflow store, logs it as
a nested run of the stage's run (:mod:`repro.train_group`) and rewrites its record with that
run's id (the id lands in the record's provenance sibling, :mod:`repro.records`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from repro.config import Params
from repro.engine import Job, Outcome, mode_of, resolve_workers
from repro.records import Record
from repro.train_group import run_tracked_group


def grid_jobs(
    run: Callable[..., dict[str, Any]],
    name: Callable[..., str],
    cost: Mapping[str, float],
    *,
    params: Params,
    root: Path,
    **axes: Sequence[Any],
) -> list[Job]:
    """One job per combination of ``axes`` (the last varying fastest): ``run(**combination,
    params=params, root=root)``, named ``name(**combination)``, costing ``cost[method]`` (1.0 for
    a method without a measured cost)."""
    jobs = []
    for values in itertools.product(*axes.values()):
        kw = dict(zip(axes, values, strict=True))
        args = kw | {"params": params, "root": root}
        jobs.append(Job(name(**kw), run, args, cost.get(kw["method"], 1.0)))
    return jobs


def run_recorded_group(
    params: Params,
    jobs: Sequence[Job],
    root: Path,
    *,
    stage: str,
    experiment: str,
    kind: type[Record],
    group_params: dict[str, Any],
    job_params: tuple[str, ...],
    curve: str | None = None,
    curve_x: str = "step",
    epochs: str | None = None,
    held_out: Callable[[dict[str, Any]], dict[str, float] | None] | None = None,
) -> None:
    """Run ``jobs`` on the CPU in ``train.workers`` processes; one nested MLflow run per job.

    A child run gets ``group_params`` plus the job's own ``job_params`` keyword arguments, the
    result's ``curve`` rows (held-out curve, step ``curve_x``) and ``epochs`` rows (per epoch),
    ``held_out(record)`` as its metrics and the job's files; a finished job's record (``kind``)
    is rewritten at ``runs/<job name>/metrics.json`` with the run's id.
    """
    workers = resolve_workers(params.train.workers, "cpu", len(jobs))
    tags = {"profile": params.profile, "device": "cpu"}

    def record(outcome: Outcome, child: Callable[..., str | None]) -> BaseException | None:
        kw, rec, ok = outcome.job.kwargs, outcome.result or {}, outcome.error is None
        run_id = child(
            name=outcome.job.name,
            run_params=group_params | {k: kw[k] for k in job_params},
            tags=tags,
            epochs=rec.get(epochs, []) if epochs else [],
            curve=rec.get(curve, []) if curve else [],
            curve_x=curve_x,
            metrics=held_out(rec["metrics"]) if ok and held_out else None,
            artifacts=rec.get("files", []),
            error=outcome.error,
        )
        if ok:
            rec["metrics"]["mlflow_run_id"] = run_id
            kind(**rec["metrics"]).write(root / "runs" / outcome.job.name / "metrics.json")
        return outcome.error

    run_tracked_group(
        params,
        jobs,
        workers=workers,
        stage=stage,
        experiment=experiment,
        run_params=group_params | {"workers": workers},
        tags=tags | {"mode": mode_of(workers)},
        record=record,
    )
