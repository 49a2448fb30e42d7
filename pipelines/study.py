"""Stage `study@<study>`: train and score every cell × method × seed of one ablation study.

The runs are one group (:mod:`repro.engine`: worker processes or one after another, as
``train.workers`` says). Outputs: the models under ``models/studies/<study>/`` (DVC-cached, with
resume checkpoints), and per cell ``runs/studies/<study>/<cell>/metrics.json`` plus
``curves.csv`` (committed): one record per run and the held-out learning curves. A run that
diverges is recorded as such (MLflow FAILED) and the group goes on with the others.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from common import record_child, run_main, stage

from repro.config import STUDIES, flatten
from repro.engine import mode_of, resolve_workers, run_group
from repro.studies import StudyResult, study_jobs, study_result, write_study_results
from repro.tracking import tracked_run
from repro.train import run_config, select_device


def add_args(p):
    p.add_argument("--study", required=True, choices=STUDIES)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    study = args.study
    plan = study_jobs(params, study, root)
    device = select_device(params.train.device)
    workers = resolve_workers(params.train.workers, device.type, len(plan.jobs))
    stage_name = f"study@{study}"
    experiment = f"{params.tracking.experiment}/{study}"
    results: list[StudyResult] = []
    t_stage = time.perf_counter()
    with tracked_run(
        params.tracking,
        stage=stage_name,
        run_name=stage_name,
        params=flatten({"studies": asdict(params.studies)}) | {"workers": workers},
        tags={
            "profile": params.profile,
            "device": str(device),
            "study": study,
            "mode": mode_of(workers),
        },
        experiment=experiment,
    ) as parent:
        for outcome in run_group(plan.jobs, workers=workers):
            result = study_result(outcome)  # raises a job's error: a bug, not a divergence
            kw = outcome.job.kwargs
            variant, seed, rec = kw["variant"], kw["seed"], result.record
            rec["mlflow_run_id"] = record_child(
                params,
                stage=stage_name,
                parent_run_id=parent.run_id,
                name=outcome.job.name,
                run_params=flatten(run_config(variant.spec(seed), kw["vparams"])),
                tags={"profile": params.profile, "device": str(device), "study": study}
                | {k: str(v) for k, v in variant.describe().items()},
                experiment=experiment,
                epochs=outcome.result["history"],
                curve=outcome.result["curve"],
                metrics=flatten({"losses": rec["losses"]}) if rec["status"] == "ok" else None,
                error=RuntimeError(rec["error"]) if rec["status"] != "ok" else None,
            )
            results.append(result)
        parent.log_metrics({"stage_seconds": time.perf_counter() - t_stage})
    write_study_results(root, params, plan, results, device=device)


if __name__ == "__main__":
    run_main(main)
