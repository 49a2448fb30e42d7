"""Stage `efficiency@<method>-<train_size>-<seed>`: one run of the data-efficiency study."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict

from common import run_main, stage

from repro.config import flatten
from repro.data import load_split
from repro.efficiency import train_efficiency_run
from repro.io import atomic_write, save_torch, write_json
from repro.models import count_parameters
from repro.tracking import tracked_run
from repro.train import configure_torch


def add_args(p):
    p.add_argument("--method", required=True)
    p.add_argument("--train-size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    cfg = params.efficiency
    if (
        args.method not in cfg.methods
        or args.train_size not in cfg.train_sizes
        or args.seed not in cfg.seeds
    ):
        raise ValueError(
            f"efficiency: ({args.method}, {args.train_size}, {args.seed}) is not a cell of "
            f"efficiency.methods × train_sizes × seeds in params.yaml"
        )
    configure_torch(__import__("torch").device("cpu"), params.train.num_threads)
    name = f"efficiency/{cfg.dataset}/{args.method}-n{args.train_size}-s{args.seed}"
    out = (
        root
        / "runs"
        / "efficiency"
        / cfg.dataset
        / f"{args.method}-n{args.train_size}-s{args.seed}"
    )
    data_dir = root / "data" / cfg.dataset
    train_x, _ = load_split(data_dir, "train")
    test_x = load_split(data_dir, "test")[0][: cfg.eval_images]
    run_params = flatten({"efficiency": asdict(cfg), "gfe": asdict(params.gfe)}) | {
        "method": args.method,
        "train_size": args.train_size,
        "seed": args.seed,
    }
    with tracked_run(
        params.tracking,
        stage=f"efficiency@{args.method}-{args.train_size}-{args.seed}",
        run_name=name,
        params=run_params,
        tags={"profile": params.profile, "device": "cpu"},
        experiment=f"{params.tracking.experiment}/efficiency",
    ) as tracker:
        t0 = time.perf_counter()
        model, curve = train_efficiency_run(
            args.method,
            cfg,
            params.gfe,
            train_uint8=train_x,
            test_uint8=test_x,
            train_size=args.train_size,
            seed=args.seed,
            name=name,
            on_point=lambda row: tracker.log_metrics(
                {k: v for k, v in row.items() if k != "step"}, step=int(row["images_seen"])
            ),
        )
        with atomic_write(out / "curve.csv", "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(curve[0]))
            writer.writeheader()
            writer.writerows(curve)
        save_torch(out / "model.pt", {"state_dict": model.state_dict(), "method": args.method})
        metrics = {
            "run": name,
            "dataset": cfg.dataset,
            "method": args.method,
            "train_size": args.train_size,
            "seed": args.seed,
            "architecture": cfg.architecture,
            "nz": cfg.nz,
            "loss": cfg.loss,
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "eval_images": cfg.eval_images,
            "n_params": count_parameters(model),
            "final": curve[-1],
            "wall_seconds": time.perf_counter() - t0,
            "profile": params.profile,
            "mlflow_run_id": tracker.run_id,
        }
        write_json(out / "metrics.json", metrics)
        tracker.log_artifact(out / "curve.csv")


if __name__ == "__main__":
    run_main(main)
