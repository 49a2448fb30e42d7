"""How good a set of generated images is, without a pretrained network: two numbers and a floor.

FID needs an Inception network this study cannot fetch, so two self-contained scores:

* :func:`mmd2_gaussian`: the squared maximum mean discrepancy between the samples and held-out
  images, Gaussian kernel in pixel space (Gretton et al. 2012, JMLR). Zero for identical sets,
  symmetric, lower is better. In pixel space with a median-heuristic bandwidth it mostly sees
  brightness and blur: the per-pixel Gaussian below matches every pixel's mean and spread by
  construction and scores well on it although its samples are noise, so it ranks samplers of
  one kind, not "looks like data".
* :func:`classifier_score`: the Inception score (Salimans et al. 2016, NeurIPS) with a small
  classifier of the dataset at hand in place of Inception (:func:`fit_classifier`):
  exp E_x KL(p(y|x) ‖ p(y)), between 1 (every sample the same class mixture) and the number of
  classes (each sample confidently one class, the classes equally often). Higher is better; the
  held-out images give its ceiling. It needs samples a classifier of real images recognises, so
  noise scores low.

:func:`pixel_gaussian_samples` is the floor a sampler must beat: independent Gaussians per pixel
fitted to the training images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: The classifier of :func:`fit_classifier`: width, epochs, batch, seed (one classifier per
#: dataset, the same for every model scored, so that the scores are comparable).
CLASSIFIER_HIDDEN, CLASSIFIER_EPOCHS, CLASSIFIER_BATCH, CLASSIFIER_SEED = 256, 3, 128, 0
#: Training images the classifier learns from (the first of the split, or all if fewer).
CLASSIFIER_IMAGES = 10_000


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² (n, m), float64, via ‖a‖² + ‖b‖² − 2a·b, clamped at 0 against rounding."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    d2 = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T
    return d2.clamp_min(0.0)


def median_bandwidth(a: torch.Tensor, b: torch.Tensor) -> float:
    """σ² of the median heuristic: the (lower) median of ‖u − v‖² over distinct pooled pairs.

    Gretton et al. (2012, JMLR, §8) set σ to the median distance between pooled points; the
    median of the squared distances is its square. 1.0 when every pair coincides (then any σ
    gives MMD 0).
    """
    pooled = torch.cat([a.flatten(1), b.flatten(1)])
    d2 = squared_distances(pooled, pooled)
    i, j = torch.triu_indices(len(pooled), len(pooled), offset=1)
    med = float(d2[i, j].median()) if len(i) else 0.0
    return med if med > 0 else 1.0


def mmd2_gaussian(a: torch.Tensor, b: torch.Tensor, sigma2: float | None = None) -> float:
    """The biased squared MMD between image sets ``a`` and ``b``, Gaussian kernel, pixel space.

    MMD²_b = mean k(a, a′) + mean k(b, b′) − 2 mean k(a, b) with k(u, v) = exp(−‖u − v‖²/(2σ²)),
    σ by :func:`median_bandwidth` (Gretton et al. 2012, JMLR, eq. 5). Why this number: it needs
    no network (FID needs a pretrained Inception, which this study cannot fetch), it is 0 for
    identical sets and positive otherwise (the Gaussian kernel is characteristic), symmetric,
    and deterministic given the samples; lower is better. It is a pixel-space number: it sees
    blur and wrong stroke mass, not semantic mistakes, so it ranks samplers of one model more
    reliably than it measures "quality". ``sigma2`` fixes σ² (one kernel for several samplers).
    """
    two_sigma2 = 2.0 * (median_bandwidth(a, b) if sigma2 is None else sigma2)

    def mean_kernel(u: torch.Tensor, v: torch.Tensor) -> float:
        return float(torch.exp(-squared_distances(u, v) / two_sigma2).mean())

    return mean_kernel(a, a) + mean_kernel(b, b) - 2.0 * mean_kernel(a, b)


def pixel_gaussian_samples(train: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """The simplest generative model, the floor a sampler must beat: independent Gaussians per
    pixel with the training images' mean and standard deviation, samples clipped to [0, 1]."""
    mean, std = train.mean(0), train.std(0)
    noise = torch.randn((n, *mean.shape), generator=generator, dtype=train.dtype)
    return (mean + std * noise).clamp(0, 1)


def fit_classifier(images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """A one-hidden-layer MLP classifier of ``images`` ([0, 1]), trained with Adam, seeded.

    Trained in a forked RNG state: fitting it leaves the caller's random numbers untouched.
    """
    classes = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CLASSIFIER_SEED)
        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(images[0].numel(), CLASSIFIER_HIDDEN),
            nn.ReLU(),
            nn.Linear(CLASSIFIER_HIDDEN, classes),
        )
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        order = torch.Generator().manual_seed(CLASSIFIER_SEED)
        for _ in range(CLASSIFIER_EPOCHS):
            perm = torch.randperm(len(images), generator=order)
            for start in range(0, len(images), CLASSIFIER_BATCH):
                idx = perm[start : start + CLASSIFIER_BATCH]
                loss = F.cross_entropy(net(images[idx]), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return net.eval()


@torch.no_grad()
def classifier_score(classifier: nn.Module, images: torch.Tensor) -> float:
    """exp E_x KL(p(y|x) ‖ p(y)) with p(y) the mean prediction over ``images`` (see module)."""
    log_p = F.log_softmax(classifier(images), dim=1).double()
    log_py = torch.logsumexp(log_p, dim=0) - math.log(len(images))
    kl = (log_p.exp() * (log_p - log_py)).sum(1).mean()
    return float(torch.exp(kl))


def score_samples(
    sets: dict[str, torch.Tensor], reference: torch.Tensor, classifier: nn.Module
) -> dict[str, dict[str, float]]:
    """``{"mmd2": {name: …}, "score": {name: …}}`` for every set of images; one kernel for all
    (σ² by the median heuristic on ``reference`` alone), so the numbers compare across sets."""
    sigma2 = median_bandwidth(reference, reference[:0])
    return {
        "mmd2": {k: mmd2_gaussian(v, reference, sigma2) for k, v in sets.items()},
        "score": {k: classifier_score(classifier, v) for k, v in sets.items()},
    }
