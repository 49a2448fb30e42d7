"""Stage `study@<study>`: train and score every cell × method × seed of one ablation study.

The runs are one group (:mod:`repro.train_study`: worker processes or one after another, as
``train.workers`` says). Outputs: the models under ``models/studies/<study>/`` (DVC-cached, with
resume checkpoints), and per cell ``runs/studies/<study>/<cell>/metrics.json`` plus
``curves.csv`` (committed): one record per run and the held-out learning curves. A run that
diverges is recorded as such (MLflow FAILED) and the group goes on with the others.
"""

from __future__ import annotations

from common import run_main, stage

from repro.config import STUDIES
from repro.train_study import train_study_group


def add_args(p):
    p.add_argument("--study", required=True, choices=STUDIES)


def main() -> None:
    args, params, root = stage(__doc__, add_args)
    train_study_group(params, args.study, root)


if __name__ == "__main__":
    run_main(main)
