"""Why GON with the GFE code's MLP decoder stays at the mean image (the data-efficiency study).

GON's latent is one gradient step from the origin (docs/protocol.md §1),
``z = −η ∇_z [SSE(D(z), x) / (n·H·W)]`` at ``z = 0`` (:class:`repro.encoders.GradientOriginEncoder`;
``n`` is the batch size, as GON.py's batch-mean MSE). Two things set the size of that step: the
``1/(n·H·W)`` of the inner loss (1/16,384 in the study's setting) and the decoder's Jacobian at
the origin. The conv decoder has BatchNorm after its first layer: at ``z = 0`` every image gives the
same pre-activation, the batch variance is 0, and BatchNorm's backward divides by ``sqrt(eps)``,
which amplifies the gradient; the MLP decoder has no normalisation. The hypothesis, measured
here rather than assumed: with the MLP decoder ``z`` is so small that ``D(z) ≈ D(0)`` for every
image, so the only thing the decoder can learn is one image, the mean.

Each variant of the GON step is trained exactly as the study's GON run at its largest training
set (same data, steps, optimiser, seeds: :func:`repro.efficiency.train_efficiency_run`):

    as_run        η = 1: the study's setting (its numbers equal the study's GON runs)
    summed        η = n·H·W: the inner loss summed over pixels and batch (per-image SSE)
    learned_step  η a learned scalar starting at 1 (GradientOriginEncoder.learn_step_size)
    batchnorm     η = 1, BatchNorm after the MLP's first layer, as in the conv decoder

and scored on the study's held-out images: the mean latent norm ``‖z‖``, the test SSE per image of
``D(z)`` and of ``D(0)`` (the same image for every input); their gap is what the latent carries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from repro.config import Params
from repro.data import load_split
from repro.efficiency import train_efficiency_run
from repro.encoders import LatentModel, sse_per_image
from repro.records import DiagnosisMetrics
from repro.runtime import configure_torch
from repro.train_run import to_unit_float

METHOD = "gon"


def with_batchnorm(model: LatentModel) -> None:
    """Insert BatchNorm after the MLP decoder's first linear layer (in place)."""
    net = model.decoder.net
    first = next(i for i, m in enumerate(net) if isinstance(m, nn.Linear))
    net.insert(first + 1, nn.BatchNorm1d(net[first].out_features))


@dataclass(frozen=True)
class Variant:
    """One GON step: its step size given n·H·W, whether η is learned, a change to the decoder."""

    what: str
    step_size: Callable[[int], float]
    learn_step_size: bool = False
    decoder_change: Callable[[LatentModel], None] | None = None


VARIANTS: dict[str, Variant] = {
    "as_run": Variant("η = 1 (the study's setting)", lambda scale: 1.0),
    "summed": Variant("η = n·H·W (inner loss summed)", lambda scale: float(scale)),
    "learned_step": Variant("η learned, from 1", lambda scale: 1.0, learn_step_size=True),
    "batchnorm": Variant(
        "η = 1, BatchNorm after the first layer", lambda scale: 1.0, decoder_change=with_batchnorm
    ),
}


@torch.no_grad()
def probe(model: LatentModel, test_uint8: torch.Tensor) -> dict[str, float]:
    """On held-out images: mean ‖z‖, test SSE per image of D(z) and of D(0), the step η."""
    was_training = model.training
    model.eval()
    x = to_unit_float(test_uint8)
    z, x_hat = model(x)
    origin = model.decoder(torch.zeros_like(z))
    model.train(was_training)
    return {
        "latent_norm": float(z.flatten(1).norm(dim=1).mean()),
        "test_sse_per_image": float(sse_per_image(x_hat, x).mean()),
        "origin_sse_per_image": float(sse_per_image(origin, x).mean()),
        "step_size": float(torch.as_tensor(model.encoder.step_size)),
    }


def diagnose(params: Params, root: Path) -> DiagnosisMetrics:
    """Every variant × seed of the study's GON at its largest training set, probed."""
    cfg = params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    data_dir = root / "data" / cfg.dataset
    train_x, _ = load_split(data_dir, "train")
    test_x = load_split(data_dir, "test")[0][: cfg.eval_images]
    train_size = max(cfg.train_sizes)
    scale = cfg.batch_size * train_x.shape[-1] * train_x.shape[-2]  # n·H·W
    rows: list[dict[str, float | int | str]] = []
    for name, variant in VARIANTS.items():
        for seed in cfg.seeds:

            def adjust(model: LatentModel, variant: Variant = variant) -> None:
                eta = variant.step_size(scale)
                model.encoder.has_parameters = variant.learn_step_size
                model.encoder.step_size = (
                    nn.Parameter(torch.tensor(eta)) if variant.learn_step_size else eta
                )
                if variant.decoder_change is not None:
                    variant.decoder_change(model)

            model, _ = train_efficiency_run(
                METHOD,
                cfg,
                params.gfe,
                train_uint8=train_x,
                test_uint8=test_x,
                train_size=train_size,
                seed=seed,
                name=f"diagnosis/{cfg.dataset}/{name}-s{seed}",
                adjust=adjust,
            )
            rows.append({"variant": name, "seed": seed} | probe(model, test_x))
    return DiagnosisMetrics(
        dataset=cfg.dataset,
        method=METHOD,
        architecture=cfg.architecture,
        train_size=train_size,
        steps=cfg.steps,
        eval_images=int(test_x.shape[0]),
        inner_loss_divisor=scale,
        variants={name: v.what for name, v in VARIANTS.items()},
        rows=rows,
        mlflow_run_id=None,  # the stage sets its MLflow run
    )
