"""Stage `train@<dataset>-<method>-<nz>-<seed>`: train one model of the study (resumable)."""

from __future__ import annotations

from common import run_main, stage

from repro.config import flatten, run_spec
from repro.tracking import tracked_run
from repro.train import fit, run_config, select_device


def add_args(p):
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--nz", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    spec = run_spec(params, args.dataset, args.method, args.nz, args.seed)
    stage_name = f"train@{spec.dataset}-{spec.method}-{spec.nz}-{spec.seed}"
    tags = {
        "profile": params.profile,
        "device": str(select_device(params.train.device)),
        "dataset": spec.dataset,
        "method": spec.method,
    }
    with tracked_run(
        params.tracking,
        stage=stage_name,
        run_name=spec.name,
        params=flatten(run_config(spec, params)),
        tags=tags,
        experiment=f"{params.tracking.experiment}/train",
    ) as tracker:
        run_dir = spec.run_dir(root / "runs")
        summary = fit(
            spec,
            params,
            data_dir=root / "data" / spec.dataset,
            run_dir=run_dir,
            on_epoch=lambda row: tracker.log_metrics(
                {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
            ),
        )
        tracker.log_metrics(
            {"n_params": summary["n_params"], "train_seconds": summary["train_seconds"]}
        )
        tracker.log_artifact(run_dir / "history.csv")


if __name__ == "__main__":
    run_main(main)
