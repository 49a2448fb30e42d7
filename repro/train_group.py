"""A group stage's runs in MLflow: one run for the stage, one nested run per model.

The train, efficiency and study stages each train a group of models (:mod:`repro.engine`: worker
processes or one after another); the stage process alone writes the MLflow store, as each model
ends: its params, per-epoch rows, held-out learning curve, final metrics and files, or FAILED
with the reason. A failed model fails the stage only after every other one has finished and
been recorded.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from repro import tracking
from repro.config import Params
from repro.engine import Job, Outcome, run_group

log = logging.getLogger(__name__)

#: ``record(outcome, child)``: files one finished job; ``child(**kwargs)`` is :func:`record_child`
#: with the stage's part filled in. Returns the job's error when it should fail the stage.
Record = Callable[[Outcome, Callable[..., str | None]], BaseException | None]


def record_child(
    params: Params,
    *,
    stage: str,
    parent_run_id: str | None,
    name: str,
    run_params: dict[str, Any],
    tags: dict[str, str],
    experiment: str,
    epochs: list[dict[str, float]] = (),
    curve: list[dict[str, float]] = (),
    curve_x: str = "step",
    metrics: dict[str, float] | None = None,
    artifacts: list[Path] = (),
    error: BaseException | None = None,
) -> str | None:
    """One model of a group stage as an MLflow run nested under the stage's run.

    Its params, per-epoch curves (step = epoch), held-out learning curve (``curve_*`` metrics,
    step = ``curve_x``), final metrics and files; FAILED with the reason when ``error``.
    Returns the run id (None with tracking off).
    """
    try:
        with tracking.tracked_run(
            params.tracking,
            stage=stage,
            run_name=name,
            params=run_params,
            tags=tags,
            experiment=experiment,
            parent_run_id=parent_run_id,
        ) as tracker:
            for row in epochs:
                tracker.log_metrics(
                    {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
                )
            for row in curve:
                tracker.log_metrics(
                    {f"curve_{k}": v for k, v in row.items() if k != curve_x and v == v},
                    step=int(row[curve_x]),
                )
            if metrics:
                tracker.log_metrics(metrics)
            for path in artifacts:
                tracker.log_artifact(path)
            if error is not None:
                raise error
            return tracker.run_id
    except BaseException as err:
        if err is not error:
            raise
        return None


def run_tracked_group(
    params: Params,
    jobs: Sequence[Job],
    *,
    workers: int,
    stage: str,
    experiment: str,
    run_params: dict[str, Any],
    tags: dict[str, str],
    record: Record,
) -> None:
    """Run ``jobs`` inside the stage's MLflow run; ``record`` files each outcome as it comes.

    When every job has ended, each failed one is logged and the first ends the stage (its
    MLflow run FAILED with that reason); otherwise the stage's run gets ``stage_seconds``.
    """
    errors: list[BaseException] = []
    t0 = time.perf_counter()
    with tracking.tracked_run(
        params.tracking,
        stage=stage,
        run_name=stage,
        params=run_params,
        tags=tags,
        experiment=experiment,
    ) as parent:
        child = functools.partial(
            record_child, params, stage=stage, parent_run_id=parent.run_id, experiment=experiment
        )
        for outcome in run_group(jobs, workers=workers):
            error = record(outcome, child)
            if error is not None:
                errors.append(error)
        for err in errors[1:]:  # every failed run is named; the first one ends the stage
            log.error("%s", err)
        if errors:
            raise errors[0]
        parent.log_metrics({"stage_seconds": time.perf_counter() - t0})
