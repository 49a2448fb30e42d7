"""Stage `efficiency`: every method × training-set size × seed of the GFE data-efficiency study.

The runs are one group (:mod:`repro.engine`). Outputs per run:
``runs/efficiency/<dataset>/<method>-n<size>-s<seed>/`` (metrics.json, curve.csv; committed)
and its ``model.pt`` under ``models/efficiency/`` (DVC-cached); MLflow: one run for the stage,
one nested run per model.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from common import record_child, run_main, stage

from repro.config import flatten
from repro.efficiency import EFFICIENCY_STEP_COST, efficiency_run
from repro.engine import Job, mode_of, resolve_workers, run_group
from repro.io import write_json
from repro.tracking import tracked_run


def main() -> None:
    _, params, root = stage(__doc__)
    cfg = params.efficiency
    jobs = [
        Job(
            f"efficiency/{cfg.dataset}/{m}-n{n}-s{seed}",
            efficiency_run,
            {"method": m, "train_size": n, "seed": seed, "params": params, "root": root},
            EFFICIENCY_STEP_COST.get(m, 1.0),
        )
        for m in cfg.methods
        for n in cfg.train_sizes
        for seed in cfg.seeds
    ]
    workers = resolve_workers(params.train.workers, "cpu", len(jobs))
    experiment = f"{params.tracking.experiment}/efficiency"
    group_params = flatten({"efficiency": asdict(cfg), "gfe": asdict(params.gfe)})
    errors = []
    t0 = time.perf_counter()
    with tracked_run(
        params.tracking,
        stage="efficiency",
        run_name="efficiency",
        params=group_params | {"workers": workers},
        tags={"profile": params.profile, "device": "cpu", "mode": mode_of(workers)},
        experiment=experiment,
    ) as parent:
        for outcome in run_group(jobs, workers=workers):
            kw = outcome.job.kwargs
            rec = outcome.result or {}
            run_id = record_child(
                params,
                stage="efficiency",
                parent_run_id=parent.run_id,
                name=outcome.job.name,
                run_params=group_params | {k: kw[k] for k in ("method", "train_size", "seed")},
                tags={"profile": params.profile, "device": "cpu"},
                experiment=experiment,
                curve=rec.get("curve", []),
                curve_x="images_seen",
                artifacts=rec.get("files", []),
                error=outcome.error,
            )
            if outcome.error is not None:
                errors.append(outcome.error)
                continue
            rec["metrics"]["mlflow_run_id"] = run_id
            write_json(root / "runs" / outcome.job.name / "metrics.json", rec["metrics"])
        if errors:
            raise errors[0]
        parent.log_metrics({"stage_seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    run_main(main)
