"""Held-out evaluation: the test code the public GON repository does not have.

The traps of docs/protocol.md §5 decide whether a test number means anything; here is how each
is handled.

* **BatchNorm mode.** Every loss is measured twice. ``running``: ``model.eval()``, BatchNorm uses
  its running statistics, so an image's score depends on that image alone. ``batch``: BatchNorm
  normalises with the statistics of the evaluation batch, exactly as during training (GON.py
  never calls ``eval()``); measured on a throw-away copy so the running statistics are untouched.
  In GON's inner pass the first BatchNorm sees a batch-constant input (z₀ = 0 gives the bias
  alone), zero variance: with batch statistics its backward pass scales by 1/√eps, while with
  running statistics (which average those degenerate passes with the real ones) it does not, so
  the latent, and the loss, can differ a lot between the modes.
* **Batch dependence.** The evaluation batch size is fixed (``evaluate.batch_size``) and the
  inner loss is normalised by the *training* batch size, not by the current batch's size (see
  :class:`repro.encoders.GradientOriginEncoder`). Under running statistics an image's score is
  then independent of the order of the test set; under batch statistics it cannot be, and
  :func:`order_spread` measures by how much over random orderings.
* **Reductions.** Losses are reported as SSE per image (sum over the channels and 32×32 pixels)
  and MSE per pixel (SSE / 1024 at 32×32): the published numbers use an unstated one. As in
  GON.py's loss, channels are summed, not averaged, so a 3-channel (CIFAR-10) "MSE per pixel" is
  the sum of the three channels' squared errors: not on the same scale as a 1-channel dataset's.
* **Affine encoder** (docs/protocol.md §5). A one-step GON's latent is an affine function of the
  image; :func:`affinity_error` measures how far a trained model's image → latent map is from
  affine.
* **Reference losses.** All-zero image, mean training image and PCA with nz components, so a
  reader can tell "learned" from "collapsed".
"""

from __future__ import annotations

import copy
import io
import math
from typing import Any

import torch
from torch import nn

from repro.encoders import sse_per_image
from repro.io import atomic_write
from repro.names import BN_MODES, registry

#: The ``module.train()`` flag each BatchNorm mode evaluates with, keyed and ordered by
#: :data:`repro.names.BN_MODES` (``running``: eval mode, running statistics; ``batch``: train
#: mode, the evaluation batch's statistics).
BN_TRAIN_FLAG: dict[str, bool] = registry(
    "BatchNorm mode", BN_MODES, {"running": False, "batch": True}
)


def evaluation_copy(model: nn.Module, bn_mode: str) -> nn.Module:
    """A frozen copy of ``model`` whose BatchNorm uses running (``eval``) or batch (``train``) stats.

    A copy, so that evaluating with batch statistics cannot move the trained model's running
    averages, and so no parameter gradient is ever built.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown BatchNorm mode {bn_mode!r}; allowed: {list(BN_MODES)}")
    frozen = copy.deepcopy(model)
    frozen.train(BN_TRAIN_FLAG[bn_mode])
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


@torch.no_grad()
def per_image_scores(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int,
    bn_mode: str,
    order: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction SSE and latent L2 norm of every image, each shape (N,), in image order.

    ``order`` (a permutation) changes which images share an evaluation batch; the results are
    mapped back so that entry i always belongs to image i.
    """
    frozen = evaluation_copy(model, bn_mode)
    device = next(model.parameters()).device
    n = images_uint8.shape[0]
    order = torch.arange(n) if order is None else order
    sse = torch.empty(n, dtype=torch.float64)
    z_norm = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x = images_uint8[idx.to(images_uint8.device)].to(device).float().div_(255.0)
        z, x_hat = frozen(x)
        sse[idx] = sse_per_image(x_hat, x).double().cpu()
        z_norm[idx] = z.flatten(1).norm(dim=1).double().cpu()
    return sse, z_norm


def per_image_sse(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int,
    bn_mode: str,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """SSE of every image's reconstruction, shape (N,), in the images' own order."""
    return per_image_scores(
        model, images_uint8, batch_size=batch_size, bn_mode=bn_mode, order=order
    )[0]


def mean_mse_per_pixel(
    model: nn.Module, images_uint8: torch.Tensor, *, batch_size: int, bn_mode: str
) -> float:
    """Mean per-pixel MSE over ``images_uint8`` (the unit of the training loss)."""
    pixels = images_uint8.shape[-1] * images_uint8.shape[-2]
    sse = per_image_sse(model, images_uint8, batch_size=batch_size, bn_mode=bn_mode)
    return float(sse.mean()) / pixels


def loss_summary(sse: torch.Tensor, pixels: int) -> dict[str, float]:
    """Both reductions of one set of per-image SSEs."""
    mean = float(sse.mean())
    return {"sse_per_image": mean, "mse_per_pixel": mean / pixels}


def order_spread(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int,
    bn_mode: str,
    shuffles: int,
    seed: int = 0,
    base: torch.Tensor | None = None,
) -> dict[str, float]:
    """How much the scores move when the test set is evaluated in other random orders.

    Returns the standard deviation of the mean SSE per image across orderings (the first
    ordering is the canonical one, ``base`` when the caller has already computed it) and the
    largest change of any single image's SSE.
    """
    gen = torch.Generator().manual_seed(seed)
    if base is None:
        base = per_image_sse(model, images_uint8, batch_size=batch_size, bn_mode=bn_mode)
    means, max_diff = [float(base.mean())], 0.0
    for _ in range(shuffles):
        perm = torch.randperm(images_uint8.shape[0], generator=gen)
        sse = per_image_sse(model, images_uint8, batch_size=batch_size, bn_mode=bn_mode, order=perm)
        means.append(float(sse.mean()))
        max_diff = max(max_diff, float((sse - base).abs().max()))
    return {
        "shuffles": shuffles,
        "test_sse_per_image_std": float(torch.tensor(means).std(unbiased=True)),
        "test_sse_per_image_max_abs_diff": max_diff,
    }


def evaluate_model(
    model: nn.Module,
    splits: dict[str, torch.Tensor],
    *,
    batch_size: int,
    order_shuffles: int,
) -> dict[str, Any]:
    """Val and test losses in both BN modes and both reductions, plus the batch-order spread.

    Each split's entry also has ``latent_norm``: the mean L2 norm of the images' latents.

    ``splits`` maps split name → uint8 images (N, C, H, W); it must contain ``test``.
    """
    pixels = splits["test"].shape[-1] * splits["test"].shape[-2]
    losses: dict[str, dict[str, dict[str, float]]] = {}
    spread: dict[str, dict[str, float]] = {}
    for mode in BN_MODES:
        losses[mode] = {}
        for split, imgs in splits.items():
            sse, z_norm = per_image_scores(model, imgs, batch_size=batch_size, bn_mode=mode)
            # The latent's size explains the BN-mode gap for GON (docs/protocol.md §5): reported
            # with the loss.
            losses[mode][split] = loss_summary(sse, pixels) | {"latent_norm": float(z_norm.mean())}
            if split == "test":
                # Running statistics are order-independent by construction: one shuffle checks it.
                shuffles = order_shuffles if mode == "batch" else 1
                spread[mode] = order_spread(
                    model, imgs, batch_size=batch_size, bn_mode=mode, shuffles=shuffles, base=sse
                )
    return {
        "losses": losses,
        "batch_order_spread": spread["batch"],
        "running_order_spread": spread["running"],
    }


def _latents(model: nn.Module, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
    frozen = evaluation_copy(model, bn_mode).double()
    with torch.no_grad():
        z, _ = frozen(x.double())
    return z.flatten(1)


def affinity_error(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    combinations: int,
    batch_size: int,
    seed: int = 0,
) -> dict[str, float]:
    """How far the image → latent map is from affine, in float64 (docs/protocol.md §5).

    For ``combinations`` random triples of image batches ``X_a, X_b, X_c`` and random weights
    ``w`` with ``w_a + w_b + w_c = 1`` (not necessarily convex), compare the latent of the
    combined batch with the same combination of the latents:
    ``‖E(Σ w X) − Σ w E(X)‖ / ‖Σ w E(X)‖``. An affine encoder gives rounding error (~1e-12);
    a non-linear one does not. Whole batches are combined, so the check holds under batch-
    statistics BatchNorm too (there the map acts on a batch, not an image). Returns the largest
    relative error over the combinations, per BN mode.
    """
    n = images_uint8.shape[0]
    if n < 3 * batch_size:
        raise ValueError(f"affinity_error needs {3 * batch_size} images, got {n}")
    gen = torch.Generator().manual_seed(seed)
    x = images_uint8.double().cpu() / 255.0
    cpu_model = copy.deepcopy(model).cpu()
    out: dict[str, float] = {}
    for mode in BN_MODES:
        worst = 0.0
        for _ in range(combinations):
            idx = torch.randperm(n, generator=gen)[: 3 * batch_size].view(3, batch_size)
            w = torch.randn(3, generator=gen, dtype=torch.float64)
            w[2] = 1.0 - w[0] - w[1]
            parts = [x[i] for i in idx]
            mixed = sum(wi * xi for wi, xi in zip(w, parts, strict=True))
            z_mixed = _latents(cpu_model, mixed, mode)
            z_comb = sum(
                wi * _latents(cpu_model, xi, mode) for wi, xi in zip(w, parts, strict=True)
            )
            err = float((z_mixed - z_comb).norm() / z_comb.norm().clamp_min(1e-300))
            worst = max(worst, err if math.isfinite(err) else math.inf)
        out[mode] = worst
    return out


def reference_losses(
    train_uint8: torch.Tensor, test_uint8: torch.Tensor, nz_values: list[int]
) -> dict[str, Any]:
    """Test losses of models that learn nothing or only linear structure.

    * ``zero_image``: predict black everywhere;
    * ``mean_train_image``: predict the mean training image;
    * ``pca``: project onto the top-``nz`` principal components of the training images (the
      best rank-nz affine reconstruction in squared error, a natural yardstick for a
      one-step GON, whose encoder is affine: docs/protocol.md §5).
    """
    x_train = train_uint8.flatten(1).double() / 255.0
    x_test = test_uint8.flatten(1).double() / 255.0
    pixels = test_uint8.shape[-1] * test_uint8.shape[-2]
    mean = x_train.mean(0, keepdim=True)
    centred = x_train - mean
    _, eigvecs = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    out: dict[str, Any] = {
        "zero_image": loss_summary(x_test.pow(2).sum(1), pixels),
        "mean_train_image": loss_summary((x_test - mean).pow(2).sum(1), pixels),
        "pca": {},
    }
    for nz in nz_values:
        basis = eigvecs[:, -nz:]
        recon = mean + ((x_test - mean) @ basis) @ basis.T
        out["pca"][str(nz)] = loss_summary((x_test - recon).pow(2).sum(1), pixels)
    return out


@torch.no_grad()
def save_reconstruction_grid(
    model: nn.Module,
    images_uint8: torch.Tensor,
    path: Any,
    *,
    bn_mode: str,
    n: int = 32,
    batch_size: int = 64,
) -> None:
    """Originals and reconstructions in alternating rows of 8 (PNG, written atomically).

    The images are reconstructed inside one evaluation batch of the fixed evaluation size so
    that, under batch statistics, they see the same kind of batch as the test numbers.
    """
    # Imported here: torchvision costs ~1.6 s of start-up, paid by every stage that imports this
    # module (training does) although only the evaluation stage draws grids.
    from torchvision.utils import make_grid, save_image

    frozen = evaluation_copy(model, bn_mode)
    device = next(model.parameters()).device
    x = images_uint8[:batch_size].to(device).float() / 255.0
    _, x_hat = frozen(x)
    x, x_hat = x[:n].cpu(), x_hat[:n].cpu()
    rows = [t for i in range(0, n, 8) for t in (x[i : i + 8], x_hat[i : i + 8])]
    grid = make_grid(torch.cat(rows), nrow=8, padding=2, pad_value=1.0)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=3, mode="nearest")[
        0
    ]  # legible 32×32 digits
    buf = io.BytesIO()
    save_image(grid, buf, format="png")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
