"""Stage `convergence`: ℓ(z) per solver iteration for a trained GFE decoder (three solvers)."""

from __future__ import annotations

import csv
from dataclasses import asdict

import torch
from common import run_main, stage

from repro.config import flatten
from repro.data import load_split
from repro.efficiency import convergence_curves, efficiency_model, efficiency_name
from repro.io import atomic_write, load_torch, write_json
from repro.tracking import tracked_run
from repro.train import configure_torch


def main() -> None:
    _, params, root = stage(__doc__)
    cfg, eff = params.convergence, params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    run_dir = root / "models" / efficiency_name(eff.dataset, cfg.method, cfg.train_size, cfg.seed)
    test_x, _ = load_split(root / "data" / eff.dataset, "test")
    model = efficiency_model(
        cfg.method, eff, params.gfe, test_x.shape[1], test_x.shape[-1], where="convergence"
    )
    model.load_state_dict(load_torch(run_dir / "model.pt")["state_dict"])
    out = root / "runs" / "convergence" / eff.dataset
    with tracked_run(
        params.tracking,
        stage="convergence",
        run_name=f"convergence/{eff.dataset}",
        params=flatten({"convergence": asdict(cfg), "gfe": asdict(params.gfe)}),
        tags={"profile": params.profile, "device": "cpu"},
        experiment=f"{params.tracking.experiment}/efficiency",
    ) as tracker:
        rows = convergence_curves(model.decoder, test_x, cfg, params.gfe, eff.loss)
        with atomic_write(out / "curves.csv", "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        summary = {
            "dataset": eff.dataset,
            "decoder": str(run_dir.relative_to(root)),
            "loss": eff.loss,
            **asdict(cfg),
            "mlflow_run_id": tracker.run_id,
            "flows": {},
        }
        for flow in ("first_order", "second_order", "adaptive_step"):
            mine = [r for r in rows if r["flow"] == flow]
            last = max(r["iteration"] for r in mine)
            final = [r for r in mine if r["iteration"] == last]
            summary["flows"][flow] = {
                "iterations": last,
                "nfe": final[0]["nfe"],
                "seconds": final[0]["seconds"],
                "final_mean_loss": sum(r["loss"] for r in final) / len(final),
            }
            tracker.log_metrics(
                {
                    f"{flow}_final_mean_loss": summary["flows"][flow]["final_mean_loss"],
                    f"{flow}_nfe": final[0]["nfe"],
                    f"{flow}_seconds": final[0]["seconds"],
                }
            )
        write_json(out / "summary.json", summary)


if __name__ == "__main__":
    run_main(main)
