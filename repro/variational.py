"""Variational GON vs a VAE with the same decoder: the models, their training and one run.

The variational GON (Bond-Taylor & Willcocks, "Gradient Origin Networks", ICLR 2021,
arXiv 2007.02798, §3.3) finds the parameters of q(z̃|x) without an encoder: the latent is the
negative gradient, at the origin, of the model's own negative ELBO, and two linear heads map it
to μ and log σ². The VAE (Kingma & Welling 2014) finds them with a conv encoder. Both share
:class:`repro.models.ConvDecoder` (GON.py's decoder: ELU, BatchNorm, Sigmoid) and the same
heads, so the two differ only in how the heads' input is found.

**What Variational-GON.py does** (cwkx/GON), and what is kept here:

* ``vae_loss`` = BCE summed over pixels, **averaged over the batch**, + KL summed over latent
  dimensions, averaged over the batch, weight 1 (the KL annealing line is commented out).
* Inner step: ``z0 = zeros(B, nz)``; the heads give μ(0), log σ²(0) (their biases); the
  ``reparameterize`` of a module in training mode draws ε, so the decoder sees
  z̃0 = μ(0) + σ(0)·ε, a fresh draw per image; inner loss = ``vae_loss`` at z̃0 (BCE + KL,
  batch mean); ``z = −∂ inner / ∂ z0`` with ``create_graph=True``: one step of size 1. Because
  the inner loss is a batch mean, each image's latent carries a factor 1/B. Here the inner loss
  is the per-image sum divided by ``inner_norm`` = the training batch size: the same latent for
  a full batch (the code drops the last partial batch; so does this loop), and an image's latent
  does not depend on how many images share its batch (as :class:`repro.encoders.
  GradientOriginEncoder`).
* Outer step: heads(z) → μ, log σ²; z̃ = μ + σ·ε with a new ε; loss = ``vae_loss``; Adam. The
  decoder and heads train through the inner gradient (second-order terms included).
* BatchNorm: training mode (batch statistics) in both passes, as in the code.

**The inner step at evaluation.** In eval mode the code's ``reparameterize`` returns μ, so its
inner step is taken at the mean, z̃0 = μ(0). The bounds here do the same (``generator=None``):
the latent z(x) is then a deterministic function of x and q(z̃|x) = N(μ(z(x)), σ²(z(x))) is a
Gaussian whose density the ELBO and IWAE need. Keeping the inner draw would make q a
continuous mixture over ε0 without a closed-form density (a fixed seeded ε0 per image would be
a Gaussian too, but conditioned on an arbitrary draw). Any q gives a valid bound on log p(x);
the choice sets how tight it is, and it differs from training, where the inner ε is drawn.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.utils import save_image

from repro.config import Params, VariationalConfig
from repro.data import load_split
from repro.errors import DivergenceError
from repro.io import atomic_write, save_torch
from repro.models import ConvDecoder, ConvEncoder, count_parameters
from repro.names import VARIATIONAL_METHODS, registry
from repro.records import VariationalMetrics
from repro.runtime import configure_torch, select_device
from repro.sample_scores import CLASSIFIER_IMAGES, fit_classifier
from repro.train_run import to_unit_float
from repro.variational_eval import (
    SAMPLING_WAYS,
    bce_per_image,
    gaussian_kl,
    held_out_bounds,
    reparameterize,
    sample_quality,
)

log = logging.getLogger(__name__)

#: Relative cost of a run, for the group's schedule only (longest first). Measured here (2-core
#: EPYC, 1 thread, ngf 16, batch 64): a variational GON step (two decoder passes, a double
#: backward) 63 ms, a VAE step 34 ms.
VARIATIONAL_STEP_COST = {"vgon": 1.9, "vae": 1.0}

#: Prior samples in each saved grid (8 × 8).
GRID = 64


class VariationalModel(nn.Module):
    """Decoder D, heads μ(h) and log σ²(h) (Linear nz → nz each); subclasses find h from x."""

    def __init__(self, nz: int, ngf: int, channels: int):
        super().__init__()
        self.nz = nz
        self.decoder = ConvDecoder(nz, ngf, channels, activation="elu")
        self.mu_head = nn.Linear(nz, nz)
        self.logvar_head = nn.Linear(nz, nz)

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each (B, nz)."""
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z̃ (B, nz) → image (B, C, 32, 32) in (0, 1)."""
        return self.decoder(z[:, :, None, None])

    def features(
        self, x: torch.Tensor, generator: torch.Generator | None, create_graph: bool
    ) -> torch.Tensor:
        raise NotImplementedError

    def posterior(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        create_graph: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z̃|x); ``generator``: the inner step's draw (None: at its mean)."""
        return self.heads(self.features(x, generator, create_graph))


class VariationalGON(VariationalModel):
    """The variational GON of Variational-GON.py: h = z = −∇_{z0} (inner −ELBO) at z0 = 0."""

    def __init__(self, nz: int, ngf: int, channels: int, inner_norm: int):
        super().__init__(nz, ngf, channels)
        self.inner_norm = inner_norm

    def inner_loss(
        self, z0: torch.Tensor, x: torch.Tensor, eps: torch.Tensor | None
    ) -> torch.Tensor:
        """Σ_images (BCE + KL) at z0 / ``inner_norm``; z̃0 = μ(z0) + σ(z0)·ε, or μ(z0) if no ε."""
        mu, logvar = self.heads(z0)
        z = mu if eps is None else reparameterize(mu, logvar, eps)
        per_image = bce_per_image(self.decode(z), x) + gaussian_kl(mu, logvar)
        return per_image.sum() / self.inner_norm

    def features(
        self, x: torch.Tensor, generator: torch.Generator | None, create_graph: bool
    ) -> torch.Tensor:
        z0 = torch.zeros(x.shape[0], self.nz, device=x.device, dtype=x.dtype, requires_grad=True)
        eps = None if generator is None else torch.randn(z0.shape, generator=generator).to(x.device)
        with torch.enable_grad():  # the latent is a gradient, even inside torch.no_grad()
            (grad,) = torch.autograd.grad(
                self.inner_loss(z0, x, eps), z0, create_graph=create_graph
            )
        return -grad


class VAE(VariationalModel):
    """The VAE: h = ConvEncoder(x) (the decoder mirrored), then the same heads."""

    def __init__(self, nz: int, ngf: int, channels: int, inner_norm: int):
        super().__init__(nz, ngf, channels)
        self.encoder = ConvEncoder(nz, ngf, channels, activation="elu")

    def features(
        self, x: torch.Tensor, generator: torch.Generator | None, create_graph: bool
    ) -> torch.Tensor:
        return self.encoder(x).flatten(1)


#: Model builders ``(nz, ngf, channels, inner_norm)``, keyed by :data:`repro.names.VARIATIONAL_METHODS`.
VARIATIONAL_MODELS: dict[str, type[VariationalModel]] = registry(
    "variational model", VARIATIONAL_METHODS, {"vgon": VariationalGON, "vae": VAE}
)


def build_variational_model(method: str, cfg: VariationalConfig, channels: int) -> VariationalModel:
    """The untrained model of ``method`` at the study's sizes (inner_norm = batch size)."""
    return VARIATIONAL_MODELS[method](cfg.nz, cfg.ngf, channels, cfg.batch_size)


def variational_loss(
    model: VariationalModel, x: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The training loss: batch mean of BCE + KL at z̃ = μ + σ·ε (Variational-GON.py's outer step)."""
    mu, logvar = model.posterior(x, generator, create_graph=True)
    z = reparameterize(mu, logvar, torch.randn(mu.shape, generator=generator).to(mu.device))
    return (bce_per_image(model.decode(z), x) + gaussian_kl(mu, logvar)).mean()


def train_variational(
    model: VariationalModel,
    images_uint8: torch.Tensor,
    cfg: VariationalConfig,
    seed: int,
    name: str,
) -> list[dict[str, float]]:
    """``cfg.epochs`` epochs of Adam at ``cfg.lr`` over ``images_uint8`` (full batches only).

    One generator seeded with ``seed`` (on the CPU, so a seed draws the same ε on every device)
    shuffles each epoch and draws every ε; batches move to the model's device. Returns one row
    per epoch: ``epoch`` (from 1), ``train_loss`` (mean over its steps) and ``seconds``.
    """
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    steps = images_uint8.shape[0] // cfg.batch_size
    history: list[dict[str, float]] = []
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        t0, total = time.perf_counter(), 0.0
        order = torch.randperm(images_uint8.shape[0], generator=gen)
        for step in range(steps):
            x = to_unit_float(
                images_uint8[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
            ).to(device)
            loss = variational_loss(model, x, gen)
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"{name}: non-finite training loss ({loss.item()}) at epoch {epoch}, "
                    f"step {step}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        row = {"epoch": epoch, "train_loss": total / steps, "seconds": time.perf_counter() - t0}
        log.info(
            "%s epoch %d: train loss %.2f (%.1fs)", name, epoch, row["train_loss"], row["seconds"]
        )
        history.append(row)
    return history


def save_grid(path: Path, images: torch.Tensor) -> None:
    """The first 64 images as an 8-wide PNG grid, written atomically."""
    with atomic_write(path, "wb") as fh:
        save_image(images[:GRID], fh, nrow=8, format="png")


def variational_name(dataset: str, method: str, seed: int) -> str:
    """``variational/<dataset>/<method>-s<seed>``: results under runs/, the model under models/."""
    return f"variational/{dataset}/{method}-s{seed}"


@functools.cache
def dataset_classifier(data_dir: Path) -> nn.Module:
    """The sample-quality classifier of the dataset at ``data_dir``: every model of the study is
    scored by the same one (its fit is seeded), so a worker process fits it once."""
    images, labels = load_split(data_dir, "train")
    return fit_classifier(to_unit_float(images[:CLASSIFIER_IMAGES]), labels[:CLASSIFIER_IMAGES])


def variational_run(method: str, seed: int, params: Params, root: Path) -> dict[str, Any]:
    """One model of the study: train, bound on held-out images, sample, write its files.

    Writes ``runs/<name>/{metrics.json, samples_heads.png, samples_direct.png}`` and
    ``models/<name>/model.pt`` (:func:`variational_name`). Returns ``metrics`` (the record),
    ``history`` (per-epoch rows) and ``files``.
    """
    cfg = params.variational
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads)
    name = variational_name(cfg.dataset, method, seed)
    root = Path(root)
    out = root / "runs" / name
    data_dir = root / "data" / cfg.dataset
    train_x = load_split(data_dir, "train")[0][: cfg.train_images]
    test_x = load_split(data_dir, "test")[0]
    if test_x.shape[0] < max(cfg.test_images, cfg.sample_images):
        raise ValueError(
            f"{data_dir}/test.pt has {test_x.shape[0]} images; variational.test_images and "
            f"variational.sample_images need {max(cfg.test_images, cfg.sample_images)}"
        )
    torch.manual_seed(seed)
    model = build_variational_model(method, cfg, channels=train_x.shape[1]).to(device)
    history = train_variational(model, train_x, cfg, seed, name)
    test = held_out_bounds(model, to_unit_float(test_x[: cfg.test_images]), cfg.iw_samples, seed)
    reference = to_unit_float(test_x[: cfg.sample_images])
    classifier = dataset_classifier(data_dir)
    samples, images = sample_quality(
        model,
        reference,
        cfg.sample_images,
        seed,
        train=to_unit_float(train_x),
        classifier=classifier,
    )
    files = [out / "metrics.json"]
    for way in SAMPLING_WAYS:
        save_grid(out / f"samples_{way}.png", images[way])
        files.append(out / f"samples_{way}.png")
    config = {
        "nz": cfg.nz,
        "ngf": cfg.ngf,
        "channels": train_x.shape[1],
        "inner_norm": cfg.batch_size,
    }
    save_torch(
        root / "models" / name / "model.pt",
        {"state_dict": model.cpu().state_dict(), "method": method, "config": config},
        checksum=True,
    )
    record = VariationalMetrics(
        run=name,
        dataset=cfg.dataset,
        method=method,
        seed=seed,
        nz=cfg.nz,
        ngf=cfg.ngf,
        n_params=count_parameters(model),
        epochs=cfg.epochs,
        train_images=train_x.shape[0],
        test_images=cfg.test_images,
        iw_samples=cfg.iw_samples,
        sample_images=cfg.sample_images,
        test=test,
        samples=samples,
        final_train_loss=history[-1]["train_loss"],
        train_seconds=sum(row["seconds"] for row in history),
        mlflow_run_id=None,  # filled in by the stage process, which owns the MLflow store
    )
    record.write(out / "metrics.json")
    return {"metrics": record.to_dict(), "history": history, "files": files}
