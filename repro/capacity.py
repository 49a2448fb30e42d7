"""What a params file will hold in memory, estimated before any work (``repro validate``).

A size that cannot fit (``model.ngf: 100000``, a batch of millions of images) would otherwise pass
the range checks of :mod:`repro.config_validate` and fail minutes later inside an allocation. The
estimate counts, for the largest model of the main comparison (every ``train.methods`` ×
``model.nz``, built on PyTorch's ``meta`` device: shapes without storage):

* its state: float32 weights, gradients and Adam's two moments (16 bytes per parameter);
* one training batch's activations: the decoder's feature maps of a forward pass at
  ``train.batch_size``, × 3 for the backward pass and GON's inner gradient (docs/protocol.md §1:
  the latent is one gradient step, so that step's graph is kept for the outer backward);
* the data a run keeps resident: its splits as uint8 tensors;

times the workers that train at once (``train.workers``). It is a floor, not a bound: allocator
slack and evaluation batches come on top, so only a need beyond what the machine has is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from repro.config import ConfigError, Params, split_sizes
from repro.encoders import build_model
from repro.engine import resolve_workers
from repro.runtime import select_device
from repro.train_run import model_options

BYTES_PER_PARAMETER = 4 * 4  # float32 weights, gradients, Adam's exp_avg and exp_avg_sq
BACKWARD_FACTOR = 3  # forward feature maps kept for the backward and GON's inner gradient
GIB = 1024**3


@dataclass(frozen=True)
class Need:
    """One part of a worker's memory: the params key that sizes it, what it is, its bytes."""

    key: str
    what: str
    bytes: int


def _channels(params: Params) -> int:
    data = params.data
    if "cifar10" in data.datasets:
        return 3
    return data.synthetic_channels if "synthetic" in data.datasets else 1


def model_needs(params: Params) -> list[Need]:
    """State and one batch's activations of the largest model of the main comparison."""
    channels = _channels(params)
    worst: list[Need] = []
    for method in params.train.methods:
        for nz in params.model.nz:
            with torch.device("meta"):
                model = build_model(
                    method, nz=nz, channels=channels, **model_options(params, method)
                )
            n_params = sum(p.numel() for p in model.parameters())
            maps = 0

            def count(_m: nn.Module, _i: object, out: object) -> None:
                nonlocal maps
                maps += out.numel() if isinstance(out, torch.Tensor) else 0

            hooks = [m.register_forward_hook(count) for m in model.decoder.modules()]
            z = torch.empty(params.train.batch_size, nz, 1, 1, device="meta")
            model.decoder(z)
            for h in hooks:
                h.remove()
            needs = [
                Need(
                    "model.ngf",
                    f"{method} nz {nz}: {n_params:,} parameters with Adam",
                    n_params * BYTES_PER_PARAMETER,
                ),
                Need(
                    "train.batch_size",
                    f"{method} nz {nz}: one batch's activations",
                    maps * 4 * BACKWARD_FACTOR,
                ),
            ]
            if sum(n.bytes for n in needs) > sum(n.bytes for n in worst):
                worst = needs
    return worst


def data_needs(params: Params) -> list[Need]:
    """The largest dataset's splits a run keeps resident (uint8, channels × size²)."""
    pixels = _channels(params) * params.data.image_size**2
    t = params.train
    largest = max(
        min(t.train_images, split_sizes(d, params.data)["train"]) for d in params.data.datasets
    )
    return [
        Need("train.train_images", f"{largest:,} training images (uint8)", largest * pixels),
        Need("train.val_images", f"{t.val_images:,} validation images", t.val_images * pixels),
    ]


def available_bytes(device: torch.device) -> int:
    """Free memory where the runs will live: the GPU's, else the system's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_fits(params: Params, available: int | None = None) -> tuple[int, int, int]:
    """(estimated bytes, workers, available bytes); a ConfigError naming the largest part's key
    if the workers that train at once cannot fit."""
    device = select_device(params.train.device)
    group = len(params.train.methods) * len(params.train.seeds)  # one train@ stage's runs
    workers = resolve_workers(params.train.workers, device.type, group)
    needs = model_needs(params) + data_needs(params)
    total = workers * sum(n.bytes for n in needs)
    available = available_bytes(device) if available is None else available
    if total > available:
        top = max(needs, key=lambda n: n.bytes)
        raise ConfigError(
            f"{top.key}: the runs need at least {total / GIB:.1f} GiB ({workers} worker(s) × "
            f"{sum(n.bytes for n in needs) / GIB:.2f} GiB; the largest part, "
            f"{top.bytes / GIB:.2f} GiB, is {top.what}) but {device.type} has "
            f"{available / GIB:.1f} GiB available; lower {top.key} (or train.workers)"
        )
    return total, workers, available
