"""The variational study's arithmetic: Gaussian pieces, held-out bounds, prior samples, MMD.

Model-agnostic: everything here takes a model with ``posterior(x) -> (μ, log σ²)`` (the
amortised or gradient-origin Gaussian q(z̃|x)), ``heads(h) -> (μ, log σ²)`` and ``decode(z̃)``
(:class:`repro.variational.VariationalModel`), so the VAE and the variational GON are scored by
the same lines.

**Units and reductions.** Every per-image quantity is in nats and summed over what it ranges
over: the Bernoulli negative log-likelihood (BCE) over pixels and channels, a KL or log density
over the latent dimensions; the study's numbers are the mean of those over images. This is
Variational-GON.py's ``vae_loss`` (``binary_cross_entropy(..., reduction='none').sum(1).mean()``
and ``-0.5 * sum(1 + logvar - mu² - exp(logvar), dim=1).mean()``), so a bound is on the scale
of the training loss. The pixels are grey levels in [0, 1], not binarised, as the code trains
them: BCE against a non-binary target is not a normalised log-likelihood (it is the
continuous-Bernoulli likelihood without its normaliser), so the bounds compare the two models
with each other and with their own training loss, not with published binarised-MNIST
likelihoods.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.sample_scores import pixel_gaussian_samples, score_samples

LOG_2PI = math.log(2 * math.pi)

#: Images × importance samples decoded per pass when scoring: memory stays that of one batch of
#: this many decoder inputs whatever ``iw_samples`` is.
EVAL_DECODES = 4096

#: Prior samples decoded per pass.
SAMPLE_BATCH = 1024

SAMPLING_WAYS = ("heads", "direct")


def bce_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log p(x|z̃) of a Bernoulli decoder: BCE summed over channels and pixels, (B,) nats."""
    return F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dimensions, (B,) nats.

    Closed form of Kingma & Welling (2014), Appendix B: −½ Σ (1 + log σ² − μ² − σ²).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last (latent) dimension; broadcasts."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z̃ = μ + σ·ε (Kingma & Welling 2014, §2.4); ``eps`` may carry leading sample dimensions."""
    return mu + (0.5 * logvar).exp() * eps


def negative_elbo(
    decoder_nll: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-image −ELBO = E_q[BCE] + KL, from ``decoder_nll`` (k, B): BCE at k samples of q.

    The expectation is the mean over the k samples (the SGVB estimator with L = k, Kingma &
    Welling 2014, eq. 7); the KL is the closed form, the term the model trains on.
    """
    bce = decoder_nll.mean(0)
    kl = gaussian_kl(mu, logvar)
    return {"neg_elbo": bce + kl, "bce": bce, "kl": kl}


def log_importance_weights(
    decoder_nll: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x), (k, B), for samples ``z`` (k, B, nz)."""
    zeros = torch.zeros_like(mu)
    return -decoder_nll + log_normal(z, zeros, zeros) - log_normal(z, mu, logvar)


def negative_iwae(log_w: torch.Tensor) -> torch.Tensor:
    """Per-image −log (1/k) Σ_k w_k (Burda et al. 2016, eq. 8), by logsumexp, (B,) nats.

    For any k it is ≤ −(1/k) Σ_k log w_k (Jensen), the single-sample-KL ELBO on the same
    samples; at k = 1 it equals it; it decreases towards −log p(x) in expectation as k grows.
    """
    return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]))


@torch.no_grad()
def bounds_of_batch(
    model: nn.Module, x: torch.Tensor, eps: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-image ``neg_elbo``, ``bce``, ``kl`` and ``neg_iwae`` of ``x`` with the noise ``eps``.

    ``eps`` (k, B, nz): the same k draws z_k = μ + σ·ε_k give the ELBO's BCE and the IWAE's
    weights.
    """
    k, b = eps.shape[:2]
    mu, logvar = model.posterior(x)  # a GON's inner gradient is taken even under no_grad
    z = reparameterize(mu, logvar, eps)
    x_hat = model.decode(z.reshape(k * b, -1)).reshape(k, b, *x.shape[1:])
    nll = bce_per_image(x_hat.flatten(0, 1), x.expand(k, *x.shape).flatten(0, 1)).view(k, b)
    out = negative_elbo(nll, mu, logvar)
    out["neg_iwae"] = negative_iwae(log_importance_weights(nll, z, mu, logvar))
    return out


def held_out_bounds(
    model: nn.Module, x: torch.Tensor, iw_samples: int, seed: int
) -> dict[str, float]:
    """Mean over the images ``x`` (float, [0, 1]) of the per-image bounds, in nats per image.

    Sums in float64; ``neg_elbo`` is ``bce + kl`` of those means, so the record adds up exactly.

    Eval mode (BatchNorm running statistics, so an image's bound does not depend on its
    batch); ``max(1, EVAL_DECODES // iw_samples)`` images per pass; the ε come from a generator
    seeded with ``seed``, so a model's numbers are a function of its weights and the seed.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same ε on every device
    per_pass = max(1, EVAL_DECODES // iw_samples)
    sums = dict.fromkeys(("bce", "kl", "neg_iwae"), 0.0)
    try:
        for start in range(0, x.shape[0], per_pass):
            xb = x[start : start + per_pass].to(device)
            eps = torch.randn(iw_samples, xb.shape[0], model.nz, generator=gen).to(device)
            per_image = bounds_of_batch(model, xb, eps)
            for key in sums:
                sums[key] += float(per_image[key].double().sum())
    finally:
        model.train(was_training)
    means = {key: total / x.shape[0] for key, total in sums.items()}
    return {"neg_elbo": means["bce"] + means["kl"]} | means


@torch.no_grad()
def prior_samples(model: nn.Module, n: int, way: str, generator: torch.Generator) -> torch.Tensor:
    """``n`` images (n, C, H, W) decoded from z ~ N(0, I), in eval mode.

    ``direct``: z straight into the decoder (Variational-GON.py's ``sample()``), the ancestral
    sample of the generative model p(z̃) p(x|z̃) both models are trained under (the KL pulls z̃,
    the decoder's input, towards N(0, I)). ``heads``: z through the μ/log σ² heads, then
    z̃ = μ(z) + σ(z)·ε: the heads' input taken to be N(0, I) (for the GON the gradient latent,
    for the VAE the encoder's features), as a latent distribution enters the decoder in training.
    """
    if way not in SAMPLING_WAYS:
        raise ValueError(f"unknown way of sampling {way!r}; allowed: {list(SAMPLING_WAYS)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    try:
        for start in range(0, n, SAMPLE_BATCH):
            m = min(SAMPLE_BATCH, n - start)
            z = torch.randn(m, model.nz, generator=generator).to(device)
            if way == "heads":
                mu, logvar = model.heads(z)
                eps = torch.randn(m, model.nz, generator=generator).to(device)
                z = reparameterize(mu, logvar, eps)
            chunks.append(model.decode(z).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def sample_quality(
    model: nn.Module,
    reference: torch.Tensor,
    n: int,
    seed: int,
    train: torch.Tensor,
    classifier: nn.Module,
) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
    """The sample scores (:func:`repro.sample_scores.score_samples`) of ``n`` samples per way of
    sampling and of the per-pixel Gaussian fitted to ``train`` (``pixel_gaussian``), against
    ``reference`` held-out images ([0, 1]), which are scored too (``test_images``: the ceiling),
    and ``relative_score``: each way's classifier score between the floor (0) and the ceiling (1).
    Each way draws from its own generator seeded with ``seed``. Returns the scores and samples.
    """
    images = {
        way: prior_samples(model, n, way, torch.Generator().manual_seed(seed))
        for way in SAMPLING_WAYS
    }
    images["pixel_gaussian"] = pixel_gaussian_samples(train, n, torch.Generator().manual_seed(seed))
    images["test_images"] = reference
    scores = score_samples(images, reference, classifier)
    s = scores["score"]
    # Where each way's samples sit between per-pixel noise (0) and real held-out images (1).
    span = s["test_images"] - s["pixel_gaussian"]
    scores["relative_score"] = {
        way: (s[way] - s["pixel_gaussian"]) / span if span > 0 else None for way in SAMPLING_WAYS
    }
    return scores, images
