"""Stage `implicit`: Implicit GON (a SIREN decoder) vs an implicit AE, and super-resolution.

Every dataset × method × seed of the ``implicit`` params section, plus GON trained at
``implicit.low_res`` pixels a side on the first dataset (one group: :mod:`repro.train_implicit`).
Outputs per run: ``runs/implicit/<dataset>/<method>-s<seed>/`` (``gon_sr<low_res>-s<seed>`` for
super-resolution; metrics.json, samples.png, recon.png) and its ``model.pt`` under
``models/implicit/`` (DVC-cached); MLflow: one run for the stage, one nested run per model.
"""

from __future__ import annotations

from common import run_main, stage

from repro.train_implicit import train_implicit_group


def main() -> None:
    _, params, root = stage(__doc__)
    train_implicit_group(params, root)


if __name__ == "__main__":
    run_main(main)
