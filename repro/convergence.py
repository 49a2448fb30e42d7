"""Convergence per solver iteration (GFE claim (c)) for a decoder of the data-efficiency study.

For one trained decoder, the per-image loss ℓ(z) after each iteration of the first-order flow
(explicit Euler), the second-order flow (explicit Euler on its first-order system) and the
adaptive step, with the wall time and gradient evaluations; and a summary per solver of where
its last iteration ended.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torchdiffeq import odeint

from repro.config import ConvergenceConfig, GFEConfig, Params
from repro.efficiency import efficiency_model
from repro.flows import (
    FirstOrderField,
    LossGradient,
    SecondOrderField,
    adaptive_step_flow,
    per_sample_loss,
    running_batchnorm,
)
from repro.io import load_torch
from repro.train_run import to_unit_float

#: The solvers compared, in the order of the rows and the summary.
FLOWS = ("first_order", "second_order", "adaptive_step")


def decoder_nz(decoder: torch.nn.Module) -> int:
    """The latent size a decoder expects (its first layer's input features/channels)."""
    for m in decoder.modules():
        if isinstance(m, torch.nn.Linear):
            return m.in_features
        if isinstance(m, torch.nn.ConvTranspose2d):
            return m.in_channels
    raise ValueError("cannot infer the latent size of this decoder")


def trained_decoder(
    params: Params, model_path: Path, channels: int, image_size: int
) -> torch.nn.Module:
    """The decoder of the ``convergence.method`` run saved at ``model_path``."""
    model = efficiency_model(
        params.convergence.method,
        params.efficiency,
        params.gfe,
        channels,
        image_size,
        where="convergence",
    )
    model.load_state_dict(load_torch(model_path)["state_dict"])
    return model.decoder


def _rows(
    flow: str, iteration: int, nfe: int, seconds: float, per_image: torch.Tensor
) -> list[dict[str, Any]]:
    """One row per image: its loss after ``iteration`` iterations of ``flow``."""
    return [
        {
            "flow": flow,
            "iteration": iteration,
            "nfe": nfe,
            "seconds": seconds,
            "image": i,
            "loss": float(v),
        }
        for i, v in enumerate(per_image)
    ]


def _fixed_step_flows(
    decoder: torch.nn.Module,
    x: torch.Tensor,
    z0: torch.Tensor,
    cfg: ConvergenceConfig,
    gfe: GFEConfig,
    loss: str,
) -> list[dict[str, Any]]:
    """The rows of ``first_order`` and ``second_order`` (see :func:`convergence_curves`)."""
    rows: list[dict[str, Any]] = []
    times = torch.arange(cfg.iterations + 1, dtype=x.dtype) * cfg.step_size
    for flow, field_cls in (("first_order", FirstOrderField), ("second_order", SecondOrderField)):
        lg = LossGradient(
            decoder, x, loss, max_nfe=10 * cfg.iterations + 10, where=f"convergence {flow}"
        )
        y0 = z0 if flow == "first_order" else (z0, torch.zeros_like(z0))
        t0 = time.perf_counter()
        ys = odeint(
            field_cls(lg, gfe.alpha),
            y0,
            times,
            method="euler",
            options={"step_size": cfg.step_size},
        )
        seconds = time.perf_counter() - t0
        zs = ys if flow == "first_order" else ys[0]
        for k in range(cfg.iterations + 1):
            # wall time and NFE grow linearly in the iteration for a fixed-step solver
            per_image = per_sample_loss(loss, decoder(zs[k]), x)
            rows += _rows(flow, k, k, seconds * k / cfg.iterations, per_image)
    return rows


def convergence_curves(
    decoder: torch.nn.Module,
    test_uint8: torch.Tensor,
    cfg: ConvergenceConfig,
    gfe: GFEConfig,
    loss: str,
) -> list[dict[str, Any]]:
    """Per-image loss after each iteration of three latent solvers, for the same decoder and images.

    Rows: flow, iteration, nfe, seconds, image, loss. ``first_order`` and ``second_order`` are
    torchdiffeq explicit Euler with step ``cfg.step_size`` (one gradient evaluation per
    iteration); ``adaptive_step`` is :func:`repro.flows.adaptive_step_flow`, whose iterations are
    its accepted steps (its rejected trials count in ``nfe``).
    """
    x = to_unit_float(test_uint8[: cfg.images])
    z0 = torch.zeros(x.shape[0], decoder_nz(decoder), 1, 1)
    with running_batchnorm(decoder), torch.no_grad():
        rows = _fixed_step_flows(decoder, x, z0, cfg, gfe, loss)
        lg = LossGradient(
            decoder, x, loss, max_nfe=50 * cfg.iterations, where="convergence adaptive_step"
        )
        rows += _rows("adaptive_step", 0, 0, 0.0, per_sample_loss(loss, decoder(z0), x))
        t_start = time.perf_counter()
        accepted = 0

        def on_accept(nfe: int, t: float, per_image: torch.Tensor) -> None:
            nonlocal accepted
            accepted += 1
            if accepted <= cfg.iterations:
                seconds = time.perf_counter() - t_start
                rows.extend(_rows("adaptive_step", accepted, nfe, seconds, per_image))

        adaptive_step_flow(
            lg,
            z0,
            alpha=gfe.alpha,
            tau=float("inf"),
            on_accept=on_accept,
            max_iterations=cfg.iterations,
            **(asdict(gfe.adaptive) | {"slope_tol": 0.0}),  # run all iterations: no early stop
        )
    return rows


def flow_summaries(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per solver: its last iteration, the NFE and seconds it took, the final mean loss."""
    summaries = {}
    for flow in FLOWS:
        mine = [r for r in rows if r["flow"] == flow]
        last = max(r["iteration"] for r in mine)
        final = [r for r in mine if r["iteration"] == last]
        summaries[flow] = {
            "iterations": last,
            "nfe": final[0]["nfe"],
            "seconds": final[0]["seconds"],
            "final_mean_loss": sum(r["loss"] for r in final) / len(final),
        }
    return summaries


def flow_metrics(summaries: dict[str, dict[str, float]]) -> dict[str, float]:
    """The summary's MLflow metrics: per solver, the final mean loss, its NFE and seconds."""
    return {
        f"{flow}_{key}": s[key]
        for flow, s in summaries.items()
        for key in ("final_mean_loss", "nfe", "seconds")
    }
