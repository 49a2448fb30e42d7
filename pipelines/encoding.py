"""Stage `encoding`: how close to optimal and how costly each method's encoding is (repro.encoding).

On the data-efficiency study's decoders at its largest training set: each method's own latent,
that latent refined by the adaptive-step flow (the amortisation gap), and GFE from a random start.
Output: ``runs/encoding/<dataset>/summary.json``.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from common import run_main, stage

from repro.config import flatten
from repro.encoding import encoding_study
from repro.tracking import tracked_run


def main() -> None:
    _, params, root = stage(__doc__)
    eff = params.efficiency
    with tracked_run(
        params.tracking,
        stage="encoding",
        run_name=f"encoding/{eff.dataset}",
        params=flatten({"efficiency": asdict(eff), "gfe": asdict(params.gfe)}),
        tags={"profile": params.profile, "device": "cpu"},
        experiment=f"{params.tracking.experiment}/efficiency",
    ) as tracker:
        record = replace(encoding_study(params, root), mlflow_run_id=tracker.run_id)
        record.write(root / "runs" / "encoding" / eff.dataset / "summary.json")
        tracker.log_rows(record.rows, label="method")


if __name__ == "__main__":
    run_main(main)
