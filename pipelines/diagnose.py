"""Stage `diagnose`: why GON with the MLP decoder stays at the mean image (repro.diagnosis).

Trains the data-efficiency study's GON at its largest training set under variants of the GON step
and probes each on the held-out images. Output: ``runs/diagnosis/<dataset>/gon_mlp.json``.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from common import run_main, stage

from repro.config import flatten
from repro.diagnosis import diagnose
from repro.tracking import tracked_run


def main() -> None:
    _, params, root = stage(__doc__)
    eff = params.efficiency
    with tracked_run(
        params.tracking,
        stage="diagnose",
        run_name=f"diagnosis/{eff.dataset}/gon_mlp",
        params=flatten({"efficiency": asdict(eff)}),
        tags={"profile": params.profile, "device": "cpu"},
        experiment=f"{params.tracking.experiment}/efficiency",
    ) as tracker:
        record = replace(diagnose(params, root), mlflow_run_id=tracker.run_id)
        record.write(root / "runs" / "diagnosis" / eff.dataset / "gon_mlp.json")
        tracker.log_rows(record.rows, label="variant")


if __name__ == "__main__":
    run_main(main)
