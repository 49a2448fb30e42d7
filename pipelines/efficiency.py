"""Stage `efficiency`: every method × training-set size × seed of the GFE data-efficiency study.

The runs are one group (:mod:`repro.train_efficiency`). Outputs per run:
``runs/efficiency/<dataset>/<method>-n<size>-s<seed>/`` (metrics.json, curve.csv; committed)
and its ``model.pt`` under ``models/efficiency/`` (DVC-cached); MLflow: one run for the stage,
one nested run per model.
"""

from __future__ import annotations

from common import run_main, stage

from repro.train_efficiency import train_efficiency_group


def main() -> None:
    _, params, root = stage(__doc__)
    train_efficiency_group(params, root)


if __name__ == "__main__":
    run_main(main)
