"""Stage `transfer`: train on digits 0–4, test on 5–9, for every method of the data-efficiency study.

Outputs ``runs/transfer/<dataset>/<method>-s<seed>/{metrics.json, curve.csv}`` (repro.transfer);
MLflow: one run for the stage with each run's unseen- and seen-class test losses.
"""

from __future__ import annotations

from dataclasses import asdict

from common import run_main, stage

from repro.config import flatten
from repro.tracking import tracked_run
from repro.transfer import transfer_run


def main() -> None:
    _, params, root = stage(__doc__)
    eff = params.efficiency
    with tracked_run(
        params.tracking,
        stage="transfer",
        run_name=f"transfer/{eff.dataset}",
        params=flatten({"efficiency": asdict(eff)}),
        tags={"profile": params.profile, "device": "cpu"},
        experiment=f"{params.tracking.experiment}/efficiency",
    ) as tracker:
        for method in eff.methods:
            for seed in eff.seeds:
                final = transfer_run(method, seed, params, root)["final"]
                tracker.log_metrics(
                    {
                        f"{method}.s{seed}.{k}": float(final[k])
                        for k in ("test_sse_per_image", "seen_test_sse_per_image")
                    }
                )


if __name__ == "__main__":
    run_main(main)
