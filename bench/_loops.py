"""The two training loops the speed scripts compare, built from the library's pieces.

* **baseline**: the loop of the public ``GON.py`` (cwkx/GON), re-stated here (not copied): a
  torchvision-style dataset that hands out PIL images (``Image.fromarray(img, mode="L")`` as
  ``torchvision.datasets.MNIST.__getitem__`` does) through ``Compose([Resize(32), ToTensor()])``,
  a ``DataLoader(batch_size=64, shuffle=True, drop_last=True)`` with ``num_workers=0`` (GON.py
  passes none) walked by an endless ``cycle`` (one epoch = one pass of a fresh iterator), per
  step ``x, t = x.to(device), t.to(device)``,
  ``z = zeros(64, nz, 1, 1).to(device).requires_grad_()``, the inner loss
  ``((D(z) - x)**2).sum(1).mean()``,
  ``grad = autograd.grad(inner, [z], create_graph=True, retain_graph=True)``, ``z = -grad``, the
  same outer loss, ``zero_grad()``, ``backward()``, ``Adam(lr 1e-4).step()``. GON.py prints
  ``loss.item()`` (and saves an image grid) every 100 steps; the ``.item()`` is kept, the image
  file is not (disk I/O, not training).
  GON.py sets no thread count and no determinism flag: the baseline runs with torch's defaults.
  The model is the library's (the decoder params.yaml trains; a GON.py older than commit
  ``9f8e1f3`` uses ReLU where the current one uses ELU: docs/protocol.md §1), so that the
  comparison isolates the loop. The baseline AE is the same loop with ``z = E(x)`` (the public
  GON code has no AE); the baseline GFE step is fed by a DataLoader with workers, as the public
  GFE code (k-flouris/gfe) loads MNIST.
* **ours**: the exact loop body of :func:`repro.train.fit` (data resident as one uint8 tensor,
  a batch is an index with a permutation, :func:`repro.train.to_unit_float`, the model's own
  forward, :func:`repro.encoders.gon_training_loss`, ``zero_grad(set_to_none=True)``, Adam, the
  loss summed on the device and read every 50 steps), or of
  :func:`repro.efficiency.train_efficiency_run` for GFE.

Both loops walk the same permutation, so they see the same batches in the same order.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch

from repro.config import RunSpec
from repro.efficiency import efficiency_model
from repro.encoders import gon_training_loss
from repro.flows import per_sample_loss
from repro.train import build_run_model, to_unit_float

METHODS = ("gon", "ae", "gfe")
GON_LOG_EVERY = 100  # GON.py prints loss.item() every 100 steps
FIT_LOG_EVERY = 50  # fit reads the loss every 50 steps


# --------------------------------------------------------------------------------------------
# GON.py's data path: PIL images through a torchvision dataset and a DataLoader
# --------------------------------------------------------------------------------------------


def pil_from_uint8(img: torch.Tensor):
    """``torchvision.datasets.MNIST``'s conversion: a uint8 H x W array to a PIL "L" image."""
    try:
        from torchvision.utils import _Image_fromarray  # what MNIST.__getitem__ calls
    except ImportError:  # older torchvision
        from PIL import Image

        return Image.fromarray(img.numpy(), mode="L")
    return _Image_fromarray(img.numpy(), mode="L")


def make_pil_dataset(images28: torch.Tensor, labels: torch.Tensor, size: int = 32):
    """A torchvision dataset over in-memory 28x28 uint8 images, item = MNIST's ``__getitem__``.

    MNIST's raw idx files are not on this machine (the registry fallback is a pickle), so this
    subclass of ``VisionDataset`` holds the same ``data`` / ``targets`` tensors that
    ``torchvision.datasets.MNIST`` loads and does in ``__getitem__`` exactly what it does:
    ``int(target)``, PIL image of mode "L", then the transform GON.py passes,
    ``Compose([Resize(size), ToTensor()])``. torchvision is imported here, not at the top, so
    that a measurement of ours does not carry it in its peak memory.
    """
    from torchvision import transforms
    from torchvision.datasets import VisionDataset

    class PILDigits(VisionDataset):
        def __init__(self, data: torch.Tensor, targets: torch.Tensor, transform: Callable):
            super().__init__(root="", transform=transform)
            self.data, self.targets = data, targets

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int) -> tuple[Any, int]:
            img, target = self.data[index], int(self.targets[index])
            img = pil_from_uint8(img)
            if self.transform is not None:
                img = self.transform(img)
            return img, target

    transform = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    return PILDigits(images28, labels, transform)


def make_loader(dataset, batch: int, order: torch.Tensor, workers: int):
    """GON.py's DataLoader (drop_last, no workers unless asked); the sampler is the permutation.

    The permutation as sampler costs what ``shuffle=True``'s RandomSampler costs: one
    ``randperm(n).tolist()`` per epoch.
    """
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=order.tolist(), drop_last=True, num_workers=workers
    )


# --------------------------------------------------------------------------------------------
# What a method trains with
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Setting:
    """What one method trains with (from params.yaml): batch, optimiser, loss."""

    method: str
    batch: int
    pool: int  # images the batches are drawn from
    make_model: Callable[[], torch.nn.Module]
    make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer]
    nz: int
    loss: str = "gon"  # gon (GON.py's per-pixel MSE) | bce | sse (efficiency loss)


def setting_for(method: str, params, channels: int = 1, image_size: int = 32) -> Setting:
    """The model, optimiser and batch the pipeline uses for ``method`` (same code paths):
    ``gon``/``ae`` at the ``model``/``train`` settings, ``gfe`` one step configuration of the
    data-efficiency study (``gfe_adaptive``, MLP decoder, RMSprop)."""
    if method in ("gon", "ae"):
        cfg = params.train
        nz = params.model.nz[0]
        spec = RunSpec(params.data.datasets[0], method, nz, 0)
        return Setting(
            method=method,
            batch=cfg.batch_size,
            pool=cfg.train_images,
            make_model=lambda: build_run_model(spec, params, channels),
            make_optimizer=lambda m: torch.optim.Adam(
                m.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)
            ),
            nz=nz,
        )
    if method == "gfe":
        eff = params.efficiency
        return Setting(
            method=method,
            batch=eff.batch_size,
            pool=max(eff.train_sizes),
            make_model=lambda: efficiency_model(
                "gfe_adaptive", eff, params.gfe, channels, image_size, where="bench"
            ),
            make_optimizer=lambda m: torch.optim.RMSprop(
                m.parameters(), lr=eff.lr, alpha=0.9, eps=1e-6
            ),
            nz=eff.nz,
            loss=eff.loss,
        )
    raise ValueError(f"unknown method {method!r}; allowed: {list(METHODS)}")


# --------------------------------------------------------------------------------------------
# One step's loss and update
# --------------------------------------------------------------------------------------------


def baseline_loss(setting: Setting, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One step's loss as the original scripts write it (GON.py's expressions, re-stated)."""
    decoder = model.decoder
    if setting.method == "gon":
        z = torch.zeros(x.shape[0], setting.nz, 1, 1).to(x.device).requires_grad_()
        g = decoder(z)
        inner = ((g - x) ** 2).sum(1).mean()
        grad = torch.autograd.grad(inner, [z], create_graph=True, retain_graph=True)[0]
        z = -grad
        g = decoder(z)
        return ((g - x) ** 2).sum(1).mean()
    if setting.method == "ae":
        g = decoder(model.encoder.net(x))
        return ((g - x) ** 2).sum(1).mean()
    # gfe: the same model; only the data path differs
    _, x_hat = model(x)
    return per_sample_loss(setting.loss, x_hat, x).mean()


def ours_loss(setting: Setting, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One step's loss exactly as fit (gon, ae) or train_efficiency_run (gfe) computes it."""
    _, x_hat = model(x)
    if setting.loss == "gon":
        return gon_training_loss(x_hat, x)
    return per_sample_loss(setting.loss, x_hat, x).mean()


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """fit's update: ``zero_grad(set_to_none=True)``, backward, one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def loss_step(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A training step ``x -> loss`` of ``loss_fn`` (eager, compiled or functional) and
    :func:`update`."""

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(x)
        update(optimizer, loss)
        return loss

    return step


def fit_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """One ordinary GON/AE training step on the batch ``x``, as fit's loop body does it."""
    _, x_hat = model(x)
    update(optimizer, gon_training_loss(x_hat, x))


# --------------------------------------------------------------------------------------------
# The loops
# --------------------------------------------------------------------------------------------


def flow_nfe(model: torch.nn.Module) -> int:
    """Gradient evaluations of the latest GFE encode (0 for GON/AE)."""
    stats = getattr(model.encoder, "last_stats", None)
    return int(stats.nfe) if stats is not None and hasattr(stats, "rejected") else 0


def run_baseline(
    setting: Setting,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device,
    max_steps: int | None = None,
) -> tuple[int, float, int]:
    """GON.py's loop over ``loader``; returns (steps, last loss, GFE gradient evaluations)."""
    model.train()
    step, nfe = -1, 0
    for step, (x, t) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            step -= 1
            break
        x, t = x.to(device), t.to(device)
        loss = baseline_loss(setting, model, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        nfe += flow_nfe(model)
        if step % GON_LOG_EVERY == 0 and step > 0:
            print(f"Step: {step}  Loss: {loss.item():.3f}", file=sys.stderr)
    return step + 1, float(loss.item()), nfe


def run_ours(
    setting: Setting,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    order: torch.Tensor,
    steps: int,
    step_fn: Callable | None = None,
) -> tuple[int, float, int]:
    """fit's loop body (gon, ae) / train_efficiency_run's (gfe).

    Returns (steps, last loss, GFE gradient evaluations). ``step_fn(x) -> loss`` replaces the
    forward/backward/Adam part (a compiled step).
    """
    b = setting.batch
    gfe = setting.method == "gfe"
    loss_sum = torch.zeros((), device=data.device)
    loss, nfe = loss_sum, 0
    model.train()
    for step in range(steps):
        x = to_unit_float(data[order[step * b : (step + 1) * b]])
        if step_fn is not None:
            loss = step_fn(x)
        else:
            if gfe:
                model.train()  # train_efficiency_run re-asserts it every step
            loss = ours_loss(setting, model, x)
            if gfe and not torch.isfinite(loss):  # its divergence guard
                raise RuntimeError(f"non-finite loss at step {step}")
            update(optimizer, loss)
        if gfe:
            nfe += flow_nfe(model)
            continue
        loss_sum += loss.detach()
        if step % FIT_LOG_EVERY == 0 or step == steps - 1:
            loss.item()  # fit reads the loss here (divergence guard, progress bar)
    return steps, float(loss.item()), nfe
