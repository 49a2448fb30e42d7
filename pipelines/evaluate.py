"""Stage `evaluate@<dataset>-<method>-<nz>-<seed>`: held-out val/test losses of one trained run."""

from __future__ import annotations

import time
from dataclasses import asdict

from common import run_main, stage
from train import add_args  # same matrix arguments as the train stage

from repro.config import flatten, run_spec
from repro.data import load_split
from repro.evaluate import affinity_error, evaluate_model, save_reconstruction_grid
from repro.io import write_json
from repro.tracking import tracked_run
from repro.train import configure_torch, load_trained, select_device


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    spec = run_spec(params, args.dataset, args.method, args.nz, args.seed)
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads)
    cfg = params.evaluate
    run_dir = spec.run_dir(root / "runs")
    data_dir = root / "data" / spec.dataset
    splits = {s: load_split(data_dir, s)[0].to(device) for s in ("val", "test")}
    splits["val"] = splits["val"][: cfg.val_images]  # None keeps the whole split
    model, summary = load_trained(run_dir, spec, params, channels=splits["test"].shape[1])
    model.to(device)

    with tracked_run(
        params.tracking,
        stage=f"evaluate@{spec.dataset}-{spec.method}-{spec.nz}-{spec.seed}",
        run_name=spec.name,
        params=flatten({"evaluate": asdict(cfg)}) | flatten(asdict(spec)),
        tags={"profile": params.profile, "device": str(device)},
        experiment=f"{params.tracking.experiment}/evaluate",
    ) as tracker:
        t0 = time.perf_counter()
        result = evaluate_model(
            model, splits, batch_size=cfg.batch_size, order_shuffles=cfg.order_shuffles
        )
        # Protocol §5: is this model's image -> latent map affine? (GON and ae_linear: yes.)
        affinity = affinity_error(
            model,
            splits["test"],
            combinations=cfg.affinity_combinations,
            # three disjoint batches are combined; a tiny test split gets smaller ones
            batch_size=min(cfg.batch_size, splits["test"].shape[0] // 3),
            seed=spec.seed,
        )
        save_reconstruction_grid(
            model,
            splits["test"],
            run_dir / "recon.png",
            bn_mode=cfg.headline_bn,
            batch_size=cfg.batch_size,
        )
        metrics = {
            "run": spec.name,
            **asdict(spec),
            "activation": params.model.activation,
            "n_params": summary["n_params"],
            "epochs": params.train.epochs,
            "train_images": params.train.train_images,
            "train_seconds": summary["train_seconds"],
            "eval_seconds": time.perf_counter() - t0,
            "device": str(device),
            "profile": params.profile,
            "eval_batch_size": cfg.batch_size,
            "val_images": int(splits["val"].shape[0]),
            "test_images": int(splits["test"].shape[0]),
            "headline_bn": cfg.headline_bn,
            "final_train_mse_per_pixel": summary["final_train_mse_per_pixel"],
            "mlflow_run_id": tracker.run_id,
            "affinity_error": affinity,
            **result,
        }
        tracker.log_metrics(
            flatten({"losses": result["losses"], "affinity_error": affinity})
            | {"eval_seconds": metrics["eval_seconds"]}
        )
        write_json(run_dir / "metrics.json", metrics)
        tracker.log_artifact(run_dir / "metrics.json")
        tracker.log_artifact(run_dir / "recon.png")


if __name__ == "__main__":
    run_main(main)
