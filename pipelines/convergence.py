"""Stage `convergence`: ℓ(z) per solver iteration for a trained GFE decoder (three solvers)."""

from __future__ import annotations

from dataclasses import asdict

import torch
from common import run_main, stage

from repro.config import flatten
from repro.convergence import convergence_curves, flow_metrics, flow_summaries, trained_decoder
from repro.data import load_split
from repro.efficiency import efficiency_name
from repro.result_files import write_results_json, write_rows
from repro.runtime import configure_torch
from repro.tracking import tracked_run


def main() -> None:
    _, params, root = stage(__doc__)
    cfg, eff = params.convergence, params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    run_dir = root / "models" / efficiency_name(eff.dataset, cfg.method, cfg.train_size, cfg.seed)
    test_x, _ = load_split(root / "data" / eff.dataset, "test")
    decoder = trained_decoder(params, run_dir / "model.pt", test_x.shape[1], test_x.shape[-1])
    out = root / "runs" / "convergence" / eff.dataset
    with tracked_run(
        params.tracking,
        stage="convergence",
        run_name=f"convergence/{eff.dataset}",
        params=flatten({"convergence": asdict(cfg), "gfe": asdict(params.gfe)}),
        tags={"profile": params.profile, "device": "cpu"},
        experiment=f"{params.tracking.experiment}/efficiency",
    ) as tracker:
        rows = convergence_curves(decoder, test_x, cfg, params.gfe, eff.loss)
        write_rows(out / "curves.csv", rows, rows[0])  # the seconds go to its provenance sibling
        flows = flow_summaries(rows)
        tracker.log_metrics(flow_metrics(flows))
        summary = {
            "dataset": eff.dataset,
            "decoder": str(run_dir.relative_to(root)),
            "loss": eff.loss,
            **asdict(cfg),
            "mlflow_run_id": tracker.run_id,
            "flows": flows,
        }
        write_results_json(out / "summary.json", summary)


if __name__ == "__main__":
    run_main(main)
