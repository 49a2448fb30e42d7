"""Stage `variational`: the variational GON vs a VAE with the same decoder, every method × seed.

The runs are one group (:mod:`repro.train_variational`). Outputs per run:
``runs/variational/<dataset>/<method>-s<seed>/`` (metrics.json: held-out −ELBO and −IWAE in
nats per image, the sample-quality MMD² per way of sampling; samples_heads.png and
samples_direct.png; committed) and its ``model.pt`` under ``models/variational/`` (DVC-cached);
MLflow: one run for the stage, one nested run per model.
"""

from __future__ import annotations

from common import run_main, stage

from repro.train_variational import train_variational_group


def main() -> None:
    _, params, root = stage(__doc__)
    train_variational_group(params, root)


if __name__ == "__main__":
    run_main(main)
