"""Stage `study@<study>`: train and score every cell × method × seed of one ablation study.

The runs are one group (:mod:`repro.engine`: worker processes or one after another, as
``train.workers`` says). Outputs: the models under ``models/studies/<study>/`` (DVC-cached, with
resume checkpoints), and per cell ``runs/studies/<study>/<cell>/metrics.json`` plus
``curves.csv`` (committed): one record per run and the held-out learning curves. A run that
diverges is recorded as such (MLflow FAILED) and the group goes on with the others.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict

from common import record_child, run_main, stage

from repro.config import STUDIES, flatten
from repro.engine import Job, mode_of, resolve_workers, run_group
from repro.groups import step_cost, study_run
from repro.io import atomic_write, write_json
from repro.studies import study_cells, study_seeds, variant_params
from repro.tracking import tracked_run
from repro.train import CURVE_FIELDS, run_config, select_device

CURVE_KEYS = ("label", "method", "activation", "nz", "steps", "seed")


def add_args(p):
    p.add_argument("--study", required=True, choices=STUDIES)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    study = args.study
    cells = study_cells(params, study)
    seeds = study_seeds(params, study)
    device = select_device(params.train.device)
    jobs = []
    for cell, variants in cells:
        for variant in variants:
            vparams = variant_params(params, variant)
            for seed in seeds:
                jobs.append(
                    Job(
                        f"{study}/{cell}/{variant.label}-s{seed}",
                        study_run,
                        {
                            "variant": variant,
                            "seed": seed,
                            "vparams": vparams,
                            "root": root,
                            "study": study,
                            "cell": cell,
                        },
                        step_cost(variant.method, gon_steps=variant.steps) * variant.nz**0.5,
                    )
                )
    workers = resolve_workers(params.train.workers, device.type, len(jobs))
    stage_name = f"study@{study}"
    experiment = f"{params.tracking.experiment}/{study}"
    records: dict[str, list] = {cell: [] for cell, _ in cells}
    curves: dict[str, list] = {cell: [] for cell, _ in cells}
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
        for outcome in run_group(jobs, workers=workers):
            if outcome.error is not None:  # a bug, not a divergence (that is a record)
                raise outcome.error
            kw = outcome.job.kwargs
            variant, seed, cell = kw["variant"], kw["seed"], kw["cell"]
            rec = outcome.result["record"]
            run_id = record_child(
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
            rec["mlflow_run_id"] = run_id
            records[cell].append(rec)
            if rec["status"] == "ok":
                key = {k: rec[k] for k in CURVE_KEYS}
                curves[cell] += [key | row for row in outcome.result["curve"]]
        parent.log_metrics({"stage_seconds": time.perf_counter() - t_stage})
    s = params.studies
    order = {job.name: i for i, job in enumerate(jobs)}  # records in params order, not finish order
    for cell, variants in cells:
        out_dir = root / "runs" / "studies" / study / cell
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = sorted(
            records[cell],
            key=lambda r: order[f"{study}/{cell}/{r['label']}-s{r['seed']}"],
        )
        rows = sorted(
            curves[cell],
            key=lambda r: (order[f"{study}/{cell}/{r['label']}-s{r['seed']}"], r["step"]),
        )
        with atomic_write(out_dir / "curves.csv", "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=(*CURVE_KEYS, *CURVE_FIELDS))
            writer.writeheader()
            writer.writerows(rows)
        write_json(
            out_dir / "metrics.json",
            {
                "study": study,
                "cell": cell,
                "dataset": variants[0].dataset,
                "profile": params.profile,
                "device": str(device),
                "seeds": seeds,
                "epochs": s.epochs,
                "train_images": s.train_images,
                "test_images": s.test_images,
                "train_seconds": sum(r.get("train_seconds", 0.0) for r in runs),
                "runs": runs,
            },
        )


if __name__ == "__main__":
    run_main(main)
