"""What training measures besides its loss: the held-out learning curve and a step's memory.

The curve is the test loss of a fixed subset of test images at step 0 and log-spaced optimiser
steps (:func:`curve_schedule`), with the images seen and training seconds at each point: what
convergence speed and the GON − AE difference along training are judged on. The memory is the
bytes autograd saves for the backward pass of one step (:class:`SavedTensorCounter`), a cost
that is the same on any device.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.evaluate import BN_MODES, mean_mse_per_pixel
from repro.train_files import CURVE_LOSS


def curve_schedule(total_steps: int, points: int) -> list[int]:
    """Step 0 and ``points`` roughly log-spaced optimiser steps ending at ``total_steps``.

    Log spacing puts most points early, where the loss falls fastest, and still reaches the end:
    ``curve_schedule(3905, 12)`` is 0, 1, 2, 4, 10, 20, 43, 91, 193, 409, 868, 1841, 3905 —
    the same for every run of a setting, so curves can be paired point by point. 0 points: none.
    """
    if points <= 0 or total_steps <= 0:
        return []
    if points == 1:
        return [0, total_steps]
    ratio = total_steps ** (1.0 / (points - 1))
    steps = {0, total_steps} | {round(ratio**i) for i in range(points)}
    return sorted(s for s in steps if 0 <= s <= total_steps)


def curve_point(
    model: nn.Module,
    images: torch.Tensor,
    *,
    step: int,
    last: bool,
    seconds: float,
    batch_size: int,
    eval_batch_size: int,
    headline: str,
) -> dict[str, float]:
    """A point of the held-out learning curve: the test loss of ``images`` (uint8) after
    ``step`` optimiser steps of ``batch_size`` images and ``seconds`` of training.

    The headline BatchNorm mode at every point, both modes at the ``last`` one (NaN otherwise).
    """
    row: dict[str, float] = {
        "step": step,
        "images_seen": step * batch_size,
        "train_seconds": seconds,
    }
    modes = BN_MODES if last else (headline,)
    for mode in BN_MODES:
        row[f"{CURVE_LOSS}_{mode}"] = (
            mean_mse_per_pixel(model, images, batch_size=eval_batch_size, bn_mode=mode)
            if mode in modes
            else float("nan")
        )
    row[CURVE_LOSS] = row[f"{CURVE_LOSS}_{headline}"]
    return row


class SavedTensorCounter:
    """Bytes of the tensors autograd saves for the backward pass while the context is active.

    The memory a training step needs beyond the weights, measured the same way on any device:
    a k-step GON saves the graphs of all k inner gradient steps, so this grows with k.
    """

    def __init__(self) -> None:
        self.bytes = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self) -> SavedTensorCounter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
