"""Stage `transfer`: train on digits 0–4, test on 5–9, for every method of the data-efficiency study.

Outputs ``runs/transfer/<dataset>/<method>-s<seed>/{metrics.json, curve.csv}`` (repro.transfer);
MLflow: one run for the stage, one nested run per model with its unseen- and seen-class test
losses (repro.train_transfer).
"""

from __future__ import annotations

from common import run_main, stage

from repro.train_transfer import train_transfer_group


def main() -> None:
    _, params, root = stage(__doc__)
    train_transfer_group(params, root)


if __name__ == "__main__":
    run_main(main)
