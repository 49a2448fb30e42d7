"""The GFE data-efficiency study: GFE vs GON vs AE trained on few images.

Data efficiency (GFE claim (a), docs/protocol.md §4): each method trains the same decoder for a
fixed number of optimiser steps on batches drawn from only the first ``train_size`` training
images, and is scored on the same held-out test images at a few points during training, so the
report can show test loss against training images seen **and** against training seconds and
gradient evaluations (docs/protocol.md §5: equal data is not equal compute). The stage's runs
are one group (:mod:`repro.train_efficiency`); the convergence per iteration of a decoder
trained here is :mod:`repro.convergence`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from repro.config import EfficiencyConfig, GFEConfig, Params
from repro.data import load_split
from repro.encoders import LatentModel, build_model
from repro.errors import DivergenceError
from repro.flows import FlowStats, per_sample_loss
from repro.io import save_torch
from repro.models import count_parameters
from repro.records import EfficiencyMetrics
from repro.result_files import write_rows
from repro.runtime import configure_torch
from repro.step import training_step
from repro.train_run import gfe_options, to_unit_float

#: Relative cost of one optimiser step of a data-efficiency run (MLP decoder; a GFE step
#: integrates a flow per batch), against the linear-encoder AE's conv step in
#: :data:`repro.groups.STEP_COST`. Only orders the stage's schedule (longest first).
EFFICIENCY_STEP_COST = {"gfe": 8.0, "gfe2": 8.0, "gfe_adaptive": 6.0, "gon": 1.5, "ae": 1.0}


def efficiency_model(
    method: str, cfg: EfficiencyConfig, gfe: GFEConfig, channels: int, image_size: int, where: str
) -> LatentModel:
    return build_model(
        method,
        nz=cfg.nz,
        architecture=cfg.architecture,
        channels=channels,
        image_size=image_size,
        inner_norm=cfg.batch_size,
        gfe=gfe_options(method, gfe, loss=cfg.loss, where=where),
    )


def _flow_stats(model: LatentModel) -> FlowStats | None:
    return getattr(model.encoder, "last_stats", None)


def _label(model: LatentModel, where: str) -> None:
    """Name the run and batch in any error a latent solver raises (FlowError messages)."""
    if hasattr(model.encoder, "where"):
        model.encoder.where = where


@torch.no_grad()
def test_scores(model: LatentModel, test_uint8: torch.Tensor, loss: str) -> dict[str, float]:
    """Mean test loss (the study's loss and SSE per image) and the encode's gradient evaluations.

    Batch statistics are never involved: the MLP has no BatchNorm, and GFE flows use running
    statistics; the whole evaluation set is one batch (flows do not couple samples).
    """
    was_training = model.training
    model.eval()
    x = to_unit_float(test_uint8)
    t0 = time.perf_counter()
    _, x_hat = model(x)
    seconds = time.perf_counter() - t0
    model.train(was_training)
    stats = _flow_stats(model) or FlowStats()
    return {
        f"test_{loss}": float(per_sample_loss(loss, x_hat, x).mean()),
        "test_sse_per_image": float(per_sample_loss("sse", x_hat, x).mean()),
        "test_encode_seconds": seconds,
        "test_encode_nfe": stats.nfe,
        "test_encode_accepted": stats.accepted,
        "test_encode_rejected": stats.rejected,
        "test_encode_final_time": stats.final_time,
    }


def train_efficiency_run(
    method: str,
    cfg: EfficiencyConfig,
    gfe: GFEConfig,
    *,
    train_uint8: torch.Tensor,
    test_uint8: torch.Tensor,
    train_size: int,
    seed: int,
    name: str,
    on_point: Any = None,
    adjust: Callable[[LatentModel], None] | None = None,
) -> tuple[LatentModel, list[dict[str, float]]]:
    """Train ``method`` for ``cfg.steps`` steps on the first ``train_size`` images; score on test.

    ``adjust`` changes the model before its optimiser is made (the variants of
    :mod:`repro.diagnosis`); the study itself trains the model as built.

    Returns the model and the curve: one row per evaluation point (step 0 included) with images
    seen, training seconds so far, training gradient evaluations so far and the test scores.
    """
    images = train_uint8[:train_size]
    channels, image_size = images.shape[1], images.shape[-1]
    torch.manual_seed(seed)
    model = efficiency_model(method, cfg, gfe, channels, image_size, where=name)
    if adjust is not None:
        adjust(model)
    optimizer = torch.optim.RMSprop(
        model.parameters(), lr=cfg.lr, alpha=0.9, eps=1e-6
    )  # the GFE code's
    order_gen = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(train_size, generator=order_gen), 0
    points = sorted({round(cfg.steps * k / cfg.eval_points) for k in range(cfg.eval_points + 1)})
    curve: list[dict[str, float]] = []
    seconds, nfe, accepted, rejected = 0.0, 0, 0, 0
    for step in range(cfg.steps + 1):
        if step in points:
            row = {
                "step": step,
                "images_seen": step * cfg.batch_size,
                "train_seconds": seconds,
                "train_nfe": nfe,
                "train_accepted": accepted,
                "train_rejected": rejected,
            }
            _label(model, f"{name}: test encode at step {step}")
            row |= test_scores(model, test_uint8, cfg.loss)
            curve.append(row)
            if on_point is not None:
                on_point(row)
        if step == cfg.steps:
            break
        if cursor + cfg.batch_size > train_size:  # a new pass over the subset, in a new order
            order, cursor = torch.randperm(train_size, generator=order_gen), 0
        x = to_unit_float(images[order[cursor : cursor + cfg.batch_size]])
        cursor += cfg.batch_size
        t0 = time.perf_counter()
        model.train()
        _label(model, f"{name}: training batch {step}")

        def guard(loss: torch.Tensor, step: int = step) -> None:
            if not torch.isfinite(loss):
                raise DivergenceError(f"{name}: non-finite training loss at step {step}")

        training_step(
            model,
            optimizer,
            x,
            lambda x_hat, x: per_sample_loss(cfg.loss, x_hat, x).mean(),
            before_update=guard,
        )
        seconds += time.perf_counter() - t0
        stats = _flow_stats(model) or FlowStats()
        nfe, accepted, rejected = (
            nfe + stats.nfe,
            accepted + stats.accepted,
            rejected + stats.rejected,
        )
    return model, curve


def efficiency_run(
    method: str, train_size: int, seed: int, params: Params, *, root: Path
) -> dict[str, Any]:
    """One data-efficiency run: train on the first ``train_size`` images, scored along the way."""
    cfg = params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    name = efficiency_name(cfg.dataset, method, train_size, seed)
    out = root / "runs" / name
    data_dir = root / "data" / cfg.dataset
    train_x, _ = load_split(data_dir, "train")
    test_x = load_split(data_dir, "test")[0][: cfg.eval_images]
    t0 = time.perf_counter()
    model, curve = train_efficiency_run(
        method,
        cfg,
        params.gfe,
        train_uint8=train_x,
        test_uint8=test_x,
        train_size=train_size,
        seed=seed,
        name=name,
    )
    write_rows(out / "curve.csv", curve, curve[0])
    save_torch(
        root / "models" / name / "model.pt", {"state_dict": model.state_dict(), "method": method}
    )
    record = EfficiencyMetrics(
        run=name,
        dataset=cfg.dataset,
        method=method,
        train_size=train_size,
        seed=seed,
        architecture=cfg.architecture,
        nz=cfg.nz,
        loss=cfg.loss,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        eval_images=cfg.eval_images,
        n_params=count_parameters(model),
        final=curve[-1],
        wall_seconds=time.perf_counter() - t0,
        profile=params.profile,
        mlflow_run_id=None,  # filled in by the stage process, which owns the MLflow store
    )
    record.write(out / "metrics.json")
    metrics = record.to_dict()
    return {"metrics": metrics, "curve": curve, "files": [out / "metrics.json", out / "curve.csv"]}


def efficiency_name(dataset: str, method: str, train_size: int, seed: int) -> str:
    """``efficiency/<dataset>/<method>-n<size>-s<seed>``: results under runs/, model under models/."""
    return f"efficiency/{dataset}/{method}-n{train_size}-s{seed}"
