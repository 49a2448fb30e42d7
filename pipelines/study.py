"""Stage `<study>@<cell>`: train and score every method × seed of one cell of an ablation study.

Outputs: the models under ``models/studies/<study>/<cell>/`` (DVC-cached, with resume
checkpoints), and ``runs/studies/<study>/<cell>/metrics.json`` plus ``curves.csv`` (committed):
one record per run and the validation curves.
A run that diverges is recorded as such (MLflow FAILED) and the stage goes on with the others.
"""

from __future__ import annotations

import csv
import time

from common import run_main, stage

from repro.config import flatten
from repro.data import load_split
from repro.io import atomic_write, write_json
from repro.studies import (
    cell_variants,
    failed_record,
    score_variant,
    study_seeds,
    variant_params,
)
from repro.tracking import tracked_run
from repro.train import (
    CURVE,
    CURVE_FIELDS,
    DivergenceError,
    configure_torch,
    fit,
    history_rows,
    run_config,
    select_device,
)

CURVE_KEYS = ("label", "method", "activation", "nz", "steps", "seed")


def add_args(p):
    p.add_argument("--study", required=True)
    p.add_argument("--dataset")
    p.add_argument("--activation")
    p.add_argument("--steps", type=int)
    p.add_argument("--nz", type=int)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    cell, variants = cell_variants(
        params,
        args.study,
        dataset=args.dataset,
        activation=args.activation,
        steps=args.steps,
        nz=args.nz,
    )
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads)
    s = params.studies
    dataset = variants[0].dataset
    data_dir = root / "data" / dataset
    splits = {
        split: load_split(data_dir, split)[0][: s.test_images].to(device)
        for split in ("val", "test")
    }
    out_dir = root / "runs" / "studies" / args.study / cell
    model_root = root / "models" / "studies" / args.study / cell
    seeds = study_seeds(params, args.study)
    # The MLflow "stage" tag is the DVC stage name, as dvc.yaml's matrix spells it.
    key = {"activation": args.activation, "multistep": args.steps}.get(
        args.study, f"{args.dataset}-{args.nz}"
    )
    dvc_stage = f"{args.study}@{key}"
    records, curves = [], []
    t_stage = time.perf_counter()
    for variant in variants:
        vparams = variant_params(params, variant)
        for seed in seeds:
            spec = variant.spec(seed)
            run_dir = model_root / f"{variant.label}-s{seed}"
            try:
                with tracked_run(
                    params.tracking,
                    stage=dvc_stage,
                    run_name=f"{args.study}/{cell}/{variant.label}-s{seed}",
                    params=flatten(run_config(spec, vparams)),
                    tags={"profile": params.profile, "device": str(device), "study": args.study}
                    | {k: str(v) for k, v in variant.describe().items()},
                    experiment=f"{params.tracking.experiment}/{args.study}",
                ) as tracker:
                    summary = fit(
                        spec,
                        vparams,
                        data_dir=data_dir,
                        run_dir=run_dir,
                        on_epoch=lambda row: tracker.log_metrics(
                            {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
                        ),
                    )
                    _, record = score_variant(
                        variant, seed, vparams, run_dir=run_dir, splits=splits, summary=summary
                    )
                    curve = history_rows(run_dir / CURVE) if (run_dir / CURVE).exists() else []
                    for row in curve:
                        tracker.log_metrics(
                            {"curve_val_mse_per_pixel": row["val_mse_per_pixel"]},
                            step=int(row["step"]),
                        )
                    tracker.log_metrics(flatten({"losses": record["losses"]}))
                    record["mlflow_run_id"] = tracker.run_id
            except DivergenceError as err:
                records.append(failed_record(variant, seed, err))
                continue
            records.append(record)
            key = {k: record[k] for k in CURVE_KEYS}
            curves += [key | row for row in curve]
    result = {
        "study": args.study,
        "cell": cell,
        "dataset": dataset,
        "profile": params.profile,
        "device": str(device),
        "seeds": seeds,
        "epochs": s.epochs,
        "train_images": s.train_images,
        "test_images": s.test_images,
        "stage_seconds": time.perf_counter() - t_stage,
        "runs": records,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "curves.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=(*CURVE_KEYS, *CURVE_FIELDS))
        writer.writeheader()
        writer.writerows(curves)
    write_json(out_dir / "metrics.json", result)


if __name__ == "__main__":
    run_main(main)
