"""Stage `train@<dataset>-<nz>`: train and evaluate every method × seed of the main comparison.

The runs are one group (:mod:`repro.engine`): worker processes or one after another, as
``train.workers`` says; each run resumes from its own checkpoint after a crash. Outputs:
``runs/main/<dataset>-nz<nz>/<method>-s<seed>/`` (metrics.json, history.csv, curve.csv,
recon.png; committed), the models under ``models/main/`` (DVC-cached), and the group's headline
numbers ``runs/main/<dataset>-nz<nz>.json`` (DVC metrics). MLflow: one run for the stage, one
nested run per model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from common import record_child, run_main, stage

from repro.config import flatten, run_spec
from repro.engine import Job, mode_of, resolve_workers, run_group
from repro.groups import main_run, step_cost
from repro.io import write_json
from repro.tracking import tracked_run
from repro.train import run_config, select_device

log = logging.getLogger("train")


def add_args(p):
    p.add_argument("--dataset", required=True)
    p.add_argument("--nz", type=int, required=True)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    specs = [
        run_spec(params, args.dataset, method, args.nz, seed)
        for method in params.train.methods
        for seed in params.train.seeds
    ]
    group = specs[0].group
    device = select_device(params.train.device)
    workers = resolve_workers(params.train.workers, device.type, len(specs))
    stage_name = f"train@{args.dataset}-{args.nz}"  # the DVC stage name (dvc.yaml's matrix)
    experiment = f"{params.tracking.experiment}/train"
    tags = {"profile": params.profile, "device": str(device), "dataset": args.dataset}
    jobs = [
        Job(s.name, main_run, {"spec": s, "params": params, "root": root}, step_cost(s.method))
        for s in specs
    ]
    group_params = flatten({"train": asdict(params.train), "evaluate": asdict(params.evaluate)})
    errors, finals = [], {}
    t0 = time.perf_counter()
    with tracked_run(
        params.tracking,
        stage=stage_name,
        run_name=stage_name,
        params=group_params | {"workers": workers, "mode": mode_of(workers)},
        tags=tags,
        experiment=experiment,
    ) as parent:
        for outcome in run_group(jobs, workers=workers):
            spec = outcome.job.kwargs["spec"]
            rec = outcome.result or {}
            metrics = rec.get("metrics", {})
            run_id = record_child(
                params,
                stage=stage_name,
                parent_run_id=parent.run_id,
                name=spec.name,
                run_params=flatten(run_config(spec, params)),
                tags=tags | {"method": spec.method, "seed": str(spec.seed)},
                experiment=experiment,
                epochs=rec.get("history", []),
                curve=rec.get("curve", []),
                metrics=flatten(
                    {"losses": metrics["losses"], "affinity_error": metrics["affinity_error"]}
                )
                | {k: metrics[k] for k in ("n_params", "train_seconds", "eval_seconds")}
                if metrics
                else None,
                artifacts=rec.get("files", []),
                error=outcome.error,
            )
            if outcome.error is not None:
                errors.append(outcome.error)
                continue
            metrics["mlflow_run_id"] = run_id
            write_json(spec.run_dir(root / "runs") / "metrics.json", metrics)
            losses = metrics["losses"]
            finals[f"{spec.method}-s{spec.seed}"] = {
                f"test_sse_per_image_{mode}": losses[mode]["test"]["sse_per_image"]
                for mode in losses
            }
        for err in errors[1:]:  # every failed run is named; the first one ends the stage
            log.error("%s", err)
        if errors:
            raise errors[0]
        parent.log_metrics({"stage_seconds": time.perf_counter() - t0})
    write_json(
        root / "runs" / "main" / f"{group}.json",
        {"group": group, "workers": workers, "mode": mode_of(workers), "runs": finals},
    )


if __name__ == "__main__":
    run_main(main)
