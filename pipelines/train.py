"""Stage `train@<dataset>-<nz>`: train and evaluate every method × seed of the main comparison.

The runs are one group (:mod:`repro.train_main`): worker processes or one after another, as
``train.workers`` says; each run resumes from its own checkpoint after a crash. Outputs:
``runs/main/<dataset>-nz<nz>/<method>-s<seed>/`` (metrics.json, history.csv, curve.csv,
recon.png; committed), the models under ``models/main/`` (DVC-cached), and the group's headline
numbers ``runs/main/<dataset>-nz<nz>.json`` (DVC metrics: mean test SSE per image over seeds, per
BatchNorm mode × method). MLflow: one run for the stage, one
nested run per model.
"""

from __future__ import annotations

from common import run_main, stage

from repro.io import write_json
from repro.train_main import train_main_group


def add_args(p):
    p.add_argument("--dataset", required=True)
    p.add_argument("--nz", type=int, required=True)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    group, headline = train_main_group(params, args.dataset, args.nz, root)
    write_json(root / "runs" / "main" / f"{group}.json", headline)


if __name__ == "__main__":
    run_main(main)
