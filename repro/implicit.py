"""The implicit study: GON with a SIREN decoder (Implicit GON) against an implicit autoencoder.

Implicit GON (Bond-Taylor & Willcocks, ICLR 2021, arXiv 2007.02798, §3.3; ``Implicit-GON.py``):
the decoder is a SIREN (Sitzmann et al., "Implicit Neural Representations with Periodic
Activation Functions", NeurIPS 2020) of a pixel's coordinates and the latent
(:class:`repro.models.SirenDecoder`), so an image is a continuous function that can be sampled
on any grid. Each run trains GON or the autoencoder (the conv encoder + the same SIREN; the
public code has none) for ``implicit.steps`` Adam steps on the first ``train_images`` training
images, scores the first ``test_images`` held-out images, and draws samples.

**The GON step on the SIREN.** Implicit-GON.py's inner loss is its outer loss,
``L = ((g − x)**2).sum(1).mean()`` over (batch, pixels, channels): the SSE per image averaged
over the batch, ``L = (1/B) Σ_i SSE_i``, and ``z = −∇_{z0} L`` at ``z0 = 0``, so
``z_i = −(1/B) ∇ SSE_i``. :class:`repro.encoders.GradientOriginEncoder` takes one step of size η
on ``Σ_i SSE_i / (inner_norm · H · W)``, i.e. ``z_i = −η / (inner_norm · H · W) ∇ SSE_i``. The
two agree with ``inner_norm = B`` (the training batch size) and ``η = H · W`` (the pixels of the
training resolution). Unlike the code's batch mean, an image's latent then does not depend on
how many images share its batch (held-out images are encoded in batches of any size).

**Outer loss**: the SSE per image averaged over the batch, the code's. **Scores**: the decoder's
output (linear, unbounded) is clamped to [0, 1] as the code does for its images, so decoded and
bicubic images are compared alike; ``test`` is scored at the run's training resolution
(``resolution`` of the record). **Samples**: Implicit-GON.py's ``gon_sample``: a Gaussian with the
mean and covariance of the latents of the last ``RECENT_LATENT_BATCHES`` training batches.

**Super-resolution** (GON only, ``low_res=True``): trained on images downsampled to ``low_res``
pixels a side (area averaging, which matches the SIREN's pixel-centre grid), the held-out latents
are found from the low-res test images, rendered on the full grid and compared with the true
images, beside bicubic upsampling of the same low-res inputs. The public code has no such
experiment (its grid is fixed); the paper shows super-resolved samples only.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from repro.config import ImplicitConfig, Params
from repro.data import load_split
from repro.encoders import LatentModel, build_model, sse_per_image
from repro.errors import DivergenceError
from repro.evaluate import loss_summary
from repro.io import atomic_write, save_torch
from repro.models import count_parameters
from repro.records import ImplicitMetrics
from repro.runtime import configure_torch, select_device
from repro.step import training_step
from repro.train_run import to_unit_float

#: Relative cost of one run's step (GON back-propagates through its inner gradient; a
#: super-resolution run renders a quarter of the pixels). Only orders the stage's schedule.
IMPLICIT_STEP_COST = {"gon": 2.3, "ae": 1.0, "gon_sr": 0.6}
#: Implicit-GON.py fits its sampling Gaussian to the latents of the last 100 batches.
RECENT_LATENT_BATCHES = 100
SAMPLES = 64  # an 8×8 grid, the code's batch of samples
RECON_IMAGES = 32
HISTORY_POINTS = 10  # training-loss rows per run (each the mean since the previous row)
CPU = torch.device("cpu")


def implicit_name(dataset: str, method: str, seed: int, low_res: int | None = None) -> str:
    """``implicit/<dataset>/<method>-s<seed>`` (``gon_sr<low_res>-s<seed>`` for super-resolution):
    results under runs/, the model under models/."""
    tag = f"gon_sr{low_res}" if low_res else method
    return f"implicit/{dataset}/{tag}-s{seed}"


def implicit_model(
    method: str, cfg: ImplicitConfig, channels: int, resolution: int, seed: int
) -> LatentModel:
    """GON or the AE with a SIREN of width ``cfg.hidden`` rendering ``resolution`` pixels a side.

    The SIREN is re-initialised from ``seed`` after the model is built, so every method (and
    resolution) of a seed starts from the same decoder.
    """
    torch.manual_seed(seed)
    model = build_model(
        method,
        nz=cfg.nz,
        ngf=cfg.hidden,
        channels=channels,
        architecture="siren",
        image_size=resolution,
        inner_norm=cfg.batch_size,
        step_size=float(resolution * resolution),  # see the module: the code's z = −∇(mean SSE)
    )
    torch.manual_seed(seed)
    model.decoder.reset_parameters()
    return model


def implicit_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Implicit-GON.py's ``((g − x)**2).sum(1).mean()``: the SSE per image, batch mean."""
    return sse_per_image(x_hat, x).mean()


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area (box-filter) downsampling to size×size: each low-res pixel is the mean it covers."""
    return F.interpolate(x, size=(size, size), mode="area")


def bicubic_upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """The baseline of super-resolution: bicubic interpolation to size×size, clamped to [0, 1]."""
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def super_resolution_sse(
    decoded: torch.Tensor, low_res: torch.Tensor, target: torch.Tensor
) -> dict[str, float]:
    """Mean SSE per image against ``target`` of the decoded images (clamped to [0, 1]) and of
    bicubic upsampling of the ``low_res`` inputs they came from."""
    bicubic = bicubic_upsample(low_res, target.shape[-1])
    return {
        "decoded_sse_per_image": float(sse_per_image(decoded.clamp(0, 1), target).mean()),
        "bicubic_sse_per_image": float(sse_per_image(bicubic, target).mean()),
    }


@torch.no_grad()
def encode(model: LatentModel, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Latents (N, nz, 1, 1) of images x in evaluation mode (the AE's BatchNorm: running
    statistics), ``chunk`` images at a time (a GON latent does not depend on its batch), each
    chunk on the model's device; the latents come back on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    z = torch.cat(
        [
            model.encoder(x[i : i + chunk].to(device), model.decoder, create_graph=False).cpu()
            for i in range(0, len(x), chunk)
        ]
    )
    model.train(was_training)
    return z


@torch.no_grad()
def render(model: LatentModel, z: torch.Tensor, size: int, chunk: int) -> torch.Tensor:
    """The SIREN's images of latents z on a size×size grid, ``chunk`` latents at a time on the
    model's device; the images come back on the CPU."""
    device = next(model.parameters()).device
    return torch.cat(
        [
            model.decoder.render(z[i : i + chunk].to(device), size).cpu()
            for i in range(0, len(z), chunk)
        ]
    )


def gaussian_samples(latents: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` latents (n, nz, 1, 1) from the Gaussian with the mean and (unbiased) covariance of
    ``latents`` (N, nz): Implicit-GON.py's ``gon_sample`` (``np.cov``, a multivariate normal).

    The covariance's square root comes from its eigendecomposition, which also serves a
    singular covariance (fewer latents than dimensions, or a latent that never varies).
    """
    z = latents.double()
    mean = z.mean(0)
    centred = z - mean
    cov = centred.T @ centred / max(len(z) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp(min=0).sqrt()
    eps = torch.randn(n, z.shape[1], generator=generator, dtype=torch.float64)
    return (mean + eps @ root.T).float().view(n, -1, 1, 1)


def train_implicit(
    method: str,
    cfg: ImplicitConfig,
    images: torch.Tensor,
    *,
    seed: int,
    name: str,
    device: torch.device = CPU,
) -> tuple[LatentModel, list[dict[str, float]], torch.Tensor]:
    """Train ``method`` for ``cfg.steps`` Adam steps on batches of ``images`` (float, N×C×r×r).

    Batches are drawn in a seeded order, a fresh permutation per pass (the last incomplete batch
    of a pass dropped, as the code's ``drop_last``). The model is built on the CPU (the same
    initial weights on every device) and trained on ``device`` (default: the CPU). Returns the
    model, the training-loss history and the latents of the last ``RECENT_LATENT_BATCHES``
    batches (N, nz, on the CPU), for sampling.
    """
    n, batch = len(images), cfg.batch_size
    if n < batch:
        raise ValueError(f"{name}: {n} training images, fewer than one batch of {batch}")
    model = implicit_model(method, cfg, images.shape[1], images.shape[-1], seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    order_gen = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(n, generator=order_gen), 0
    recent: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda m, i, out: recent.append(out[0].detach().flatten(1)))
    points = {round(cfg.steps * k / HISTORY_POINTS) for k in range(1, HISTORY_POINTS + 1)}
    history: list[dict[str, float]] = []
    losses: list[float] = []
    seconds = 0.0
    model.train()
    try:
        for step in range(cfg.steps):
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=order_gen), 0
            x = images[order[cursor : cursor + batch]].to(device)
            cursor += batch
            t0 = time.perf_counter()

            def guard(loss: torch.Tensor, step: int = step) -> None:
                if not torch.isfinite(loss):
                    raise DivergenceError(f"{name}: non-finite training loss at step {step}")

            loss = training_step(model, optimizer, x, implicit_loss, before_update=guard)
            seconds += time.perf_counter() - t0
            del recent[:-RECENT_LATENT_BATCHES]
            losses.append(float(loss.detach()))
            if step + 1 in points:
                history.append(
                    {
                        "step": step + 1,
                        "images_seen": (step + 1) * batch,
                        "train_sse_per_image": sum(losses) / len(losses),
                        "train_seconds": seconds,
                    }
                )
                losses = []
    finally:
        hook.remove()
    return model, history, torch.cat(recent).cpu()


def image_grid(images: torch.Tensor, *, ncol: int = 8, pad: int = 2) -> torch.Tensor:
    """Images (N, C, H, W) tiled ``ncol`` to a row on a white background: (C, H', W')."""
    n, c, h, w = images.shape
    nrow = -(-n // ncol)
    grid = torch.ones(c, pad + nrow * (h + pad), pad + ncol * (w + pad))
    for k, image in enumerate(images):
        top, left = pad + (k // ncol) * (h + pad), pad + (k % ncol) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


def write_grid(panels: list[torch.Tensor], path: Path, *, n: int) -> None:
    """A PNG of the first ``n`` images of each panel, in rows of 8 (one row of each panel in
    turn), 2× enlarged; written atomically."""
    # PIL rather than torchvision's save_image: importing torchvision costs each worker ~1.3 s.
    from PIL import Image

    rows = [p[i : i + 8].clamp(0, 1) for i in range(0, n, 8) for p in panels]
    grid = image_grid(torch.cat(rows)).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # as save_image rounds
    array = pixels[0].numpy() if len(pixels) == 1 else pixels.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="png")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def implicit_run(
    method: str, dataset: str, seed: int, params: Params, root: Path, *, low_res: bool = False
) -> dict[str, Any]:
    """One run of the study (a picklable job): train, score held-out images, draw samples.

    Writes ``runs/<name>/{metrics.json, samples.png, recon.png}`` and ``models/<name>/model.pt``
    (``name`` = :func:`implicit_name`); returns the record, the history and the files.
    """
    cfg = params.implicit
    if low_res and method != "gon":
        raise ValueError(f"super-resolution runs are GON only, got {method!r}")
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads)
    name = implicit_name(dataset, method, seed, cfg.low_res if low_res else None)
    out, data_dir = root / "runs" / name, root / "data" / dataset
    train = to_unit_float(load_split(data_dir, "train")[0][: cfg.train_images])
    test = to_unit_float(load_split(data_dir, "test")[0][: cfg.test_images])
    size = test.shape[-1]
    resolution = cfg.low_res if low_res else size
    if low_res:
        train, test_in = downsample(train, resolution), downsample(test, resolution)
    else:
        test_in = test
    t0 = time.perf_counter()
    model, history, latents = train_implicit(
        method, cfg, train, seed=seed, name=name, device=device
    )
    train_seconds = time.perf_counter() - t0
    z = encode(model, test_in, cfg.batch_size)
    recon = render(model, z, resolution, cfg.batch_size)
    test_scores = loss_summary(sse_per_image(recon.clamp(0, 1), test_in), resolution**2)
    # What a latent that carries no information gives: every image decoded as the mean image.
    mean_image = train.mean(0, keepdim=True).expand_as(test_in)
    test_scores["mean_image_sse_per_image"] = float(sse_per_image(mean_image, test_in).mean())
    if not math.isfinite(test_scores["sse_per_image"]):
        raise DivergenceError(f"{name}: non-finite held-out loss after step {cfg.steps}")
    super_resolution, panels = None, [test, recon]
    if low_res:
        decoded = render(model, z, size, cfg.batch_size)
        super_resolution = super_resolution_sse(decoded, test_in, test)
        nearest = F.interpolate(test_in, size=(size, size), mode="nearest")
        panels = [test, nearest, bicubic_upsample(test_in, size), decoded]
    sample_gen = torch.Generator().manual_seed(seed)
    samples = render(model, gaussian_samples(latents, SAMPLES, sample_gen), size, cfg.batch_size)
    write_grid([samples], out / "samples.png", n=SAMPLES)
    write_grid(panels, out / "recon.png", n=min(len(test), RECON_IMAGES // (len(panels) // 2)))
    save_torch(
        root / "models" / name / "model.pt",
        {
            "state_dict": model.cpu().state_dict(),
            "method": method,
            "config": {"implicit": asdict(cfg), "resolution": resolution, "seed": seed},
        },
        checksum=True,
    )
    record = ImplicitMetrics(
        run=name,
        dataset=dataset,
        method=method,
        seed=seed,
        nz=cfg.nz,
        hidden=cfg.hidden,
        n_params=count_parameters(model),
        steps=cfg.steps,
        train_images=len(train),
        test_images=len(test),
        resolution=resolution,
        test=test_scores,
        super_resolution=super_resolution,
        train_seconds=train_seconds,
        mlflow_run_id=None,  # filled in by the stage process, which owns the MLflow store
    )
    record.write(out / "metrics.json")
    files = [out / f for f in ("metrics.json", "samples.png", "recon.png")]
    return {"metrics": record.to_dict(), "history": history, "files": files}
