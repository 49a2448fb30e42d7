"""One optimiser step of any method: the one place where a latent, a loss and an update meet.

``training_step`` is what :func:`repro.train.fit` (GON, AE, linear-encoder AE, the ablations),
:func:`repro.efficiency.train_efficiency_run` (GFE, GON and AE with the MLP decoder) and the CUDA
graph of :mod:`repro.gpu` (which captures this very call) execute per batch. How the latent is
found (GON's inner gradient steps from the origin, an encoder pass, a GFE flow) is the model's
encoder (:mod:`repro.encoders`); the step only sees ``model(x) -> (z, x_hat)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    loss_fn: Loss,
    *,
    before_update: Callable[[torch.Tensor], None] | None = None,
    set_to_none: bool = True,
) -> torch.Tensor:
    """latent → reconstruction → loss → backward → (check) → optimiser update; returns the loss.

    ``before_update(loss)`` runs after the backward pass and before the update: the divergence
    guard uses it to refuse a non-finite loss or gradient before it reaches the weights.
    """
    _, x_hat = model(x)
    loss = loss_fn(x_hat, x)
    optimizer.zero_grad(set_to_none=set_to_none)
    loss.backward()
    if before_update is not None:
        before_update(loss)
    optimizer.step()
    return loss
