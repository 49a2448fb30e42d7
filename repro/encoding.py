"""How close to optimal, and how costly, each method's encoding is (GFE paper; docs/protocol.md §4).

On the decoders the data-efficiency study trained at its largest training set
(``models/efficiency/<dataset>/<method>-n<size>-s<seed>/model.pt``) and its held-out images:

* **own**: the study loss and SSE per image of the method's own latent (AE: its encoder; GON: one
  gradient step; GFE: the adaptive-step flow from z(0) = 0), its gradient evaluations and seconds;
* **refined**: that latent refined by the adaptive-step gradient flow on the same decoder (GFE's
  own solver and settings, started at the method's latent). ``own − refined`` is the
  *amortisation gap*: how much loss the method's encoding leaves on the table for its decoder;
* **random start** (GFE only): the flow from z(0) ~ N(0, I), the GFE code's default, instead of
  z(0) = 0 (the study's), on the same images and decoder.

Per-image values are averaged over the images; each seed's model is one sample for the report's
intervals over seeds.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from repro.config import Params
from repro.data import load_split
from repro.efficiency import efficiency_model, efficiency_name
from repro.encoders import LatentModel
from repro.engine import Job, resolve_workers, run_group
from repro.flows import LossGradient, adaptive_step_flow, per_sample_loss, running_batchnorm
from repro.io import load_torch
from repro.records import EncodingMetrics
from repro.runtime import configure_torch
from repro.train_run import to_unit_float

RANDOM_START_SEED = 1234  # the z(0) ~ N(0, I) draw, the same for every model


def refine(
    decoder: torch.nn.Module, x: torch.Tensor, z0: torch.Tensor, params: Params, where: str
) -> tuple[torch.Tensor, int]:
    """The adaptive-step flow on ``decoder`` from ``z0`` (the study's GFE settings): z, evaluations."""
    gfe, loss = params.gfe, params.efficiency.loss
    lg = LossGradient(decoder, x, loss, gfe.max_nfe, where)
    with running_batchnorm(decoder), torch.no_grad():
        z = adaptive_step_flow(lg, z0, alpha=gfe.alpha, tau=gfe.tau, **asdict(gfe.adaptive))
    return z, lg.stats.nfe


def _scores(decoder: torch.nn.Module, z: torch.Tensor, x: torch.Tensor, loss: str) -> list[float]:
    with torch.no_grad():
        x_hat = decoder(z)
        return [
            float(per_sample_loss(loss, x_hat, x).mean()),
            float(per_sample_loss("sse", x_hat, x).mean()),
        ]


def probe_model(
    model: LatentModel, method: str, x: torch.Tensor, params: Params, where: str
) -> dict[str, float]:
    """One trained model: its own encoding, refined, and (GFE) from a random start."""
    loss = params.efficiency.loss
    model.eval()
    decoder = model.decoder
    t0 = time.perf_counter()
    z_own = model.encoder(x, decoder, create_graph=False).detach()
    seconds = time.perf_counter() - t0
    stats = getattr(model.encoder, "last_stats", None)
    own_loss, own_sse = _scores(decoder, z_own, x, loss)
    z_ref, refine_nfe = refine(decoder, x, z_own, params, f"{where}: refine")
    ref_loss, ref_sse = _scores(decoder, z_ref, x, loss)
    row = {
        "own_loss": own_loss,
        "own_sse_per_image": own_sse,
        "refined_loss": ref_loss,
        "refined_sse_per_image": ref_sse,
        "gap_loss": own_loss - ref_loss,
        "refine_nfe": float(refine_nfe),
        "encode_nfe": float(stats.nfe if stats is not None else 0),
        "encode_seconds_per_image": seconds / x.shape[0],
    }
    if method.startswith("gfe"):
        g = torch.Generator().manual_seed(RANDOM_START_SEED)
        z0 = torch.randn(z_own.shape, generator=g, dtype=x.dtype)
        z_rand, _ = refine(decoder, x, z0, params, f"{where}: random start")
        row["random_start_loss"], row["random_start_sse_per_image"] = _scores(
            decoder, z_rand, x, loss
        )
    return row


def _test_images(params: Params, root: Path) -> torch.Tensor:
    eff = params.efficiency
    return to_unit_float(load_split(root / "data" / eff.dataset, "test")[0][: eff.eval_images])


def probe_run(method: str, seed: int, params: Params, root: Path) -> dict[str, float]:
    """One trained model of the study's largest training set, probed (a picklable job)."""
    eff = params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    x = _test_images(params, root)
    name = efficiency_name(eff.dataset, method, max(eff.train_sizes), seed)
    model = efficiency_model(
        method, eff, params.gfe, x.shape[1], x.shape[-1], where=f"encoding {name}"
    )
    model.load_state_dict(load_torch(root / "models" / name / "model.pt")["state_dict"])
    return {"method": method, "seed": seed} | probe_model(model, method, x, params, name)


def encoding_study(params: Params, root: Path) -> EncodingMetrics:
    """Every method × seed of the data-efficiency study at its largest training set, probed in
    ``train.workers`` processes (:mod:`repro.engine`); rows in method × seed order."""
    eff = params.efficiency
    size = max(eff.train_sizes)
    jobs = [
        Job(f"{m}-s{s}", probe_run, {"method": m, "seed": s, "params": params, "root": root})
        for m in eff.methods
        for s in eff.seeds
    ]
    found: dict[str, dict[str, float]] = {}
    for outcome in run_group(jobs, workers=resolve_workers(params.train.workers, "cpu", len(jobs))):
        if outcome.error is not None:
            raise outcome.error
        found[outcome.job.name] = outcome.result
    rows = [found[job.name] for job in jobs]
    x = _test_images(params, root)
    return EncodingMetrics(
        dataset=eff.dataset,
        train_size=size,
        eval_images=int(x.shape[0]),
        loss=eff.loss,
        random_start_seed=RANDOM_START_SEED,
        rows=rows,
        mlflow_run_id=None,  # the stage sets its MLflow run
    )
