"""One training run in progress: what the loop (:func:`repro.train.fit`) carries from step to
step, what its checkpoint holds and restores, and the summary it ends with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repro.config import Params, RunSpec
from repro.encoders import LatentModel
from repro.errors import DivergenceError
from repro.models import count_parameters
from repro.train_files import kept, restore_checkpoint
from repro.train_measure import curve_point, curve_schedule


def _no_cost() -> dict[str, float]:
    """The measured costs before a measurement: NaN (``cuda_peak_bytes`` stays NaN on CPU)."""
    return {"graph_bytes_per_step": float("nan"), "cuda_peak_bytes": float("nan")}


@dataclass
class Training:
    """A run's states, data and records (history rows, curve points, measured costs).

    The data are resident on the device as uint8: the first ``train.train_images`` training
    images (the same for every seed, each seed in its own ``data_order``), the first
    ``val_images`` validation images and the curve's fixed test subset (the same for every run).
    """

    spec: RunSpec
    params: Params
    device: torch.device
    config: dict[str, Any]  # repro.train_run.run_config: stored in checkpoint and model
    key: str  # repro.train.config_key: a checkpoint with another key is not resumed
    ckpt_path: Path
    model: LatentModel
    optimizer: torch.optim.Optimizer
    data_order: torch.Generator
    train_x: torch.Tensor
    val_x: torch.Tensor
    curve_x: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    cost: dict[str, float] = field(default_factory=_no_cost)
    start_epoch: int = 1  # the first epoch this process trains (after a resume: not 1)
    graphed_step: Callable[[torch.Tensor], torch.Tensor] | None = None  # train.cuda_graphs

    @property
    def n_batches(self) -> int:
        """Full batches per epoch (the last incomplete one is dropped)."""
        return self.train_x.shape[0] // self.params.train.batch_size

    @property
    def total_steps(self) -> int:
        return self.params.train.epochs * self.n_batches

    def curve_steps(self) -> set[int]:
        """The optimiser steps after which the held-out curve is scored."""
        return set(curve_schedule(self.total_steps, self.params.train.curve_points))

    def record_curve(self, step: int, seconds: float) -> None:
        """The curve's point after ``step`` optimiser steps and ``seconds`` of training."""
        point = curve_point(
            self.model,
            self.curve_x,
            step=step,
            last=step == self.total_steps,
            seconds=seconds,
            batch_size=self.params.train.batch_size,
            eval_batch_size=self.params.evaluate.batch_size,
            headline=self.params.evaluate.headline_bn,
        )
        self.curve.append(point)

    def fail(self, what: str) -> DivergenceError:
        """This run's divergence error: what went wrong, at which lr, what is kept."""
        return DivergenceError(
            f"{self.spec.name}: {what} (lr={self.params.train.lr}); {kept(self.ckpt_path)}"
        )

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue where checkpoint ``ckpt`` (of :attr:`ckpt_path`) ended: after its epoch."""
        restore_checkpoint(ckpt, self.ckpt_path, self.model, self.optimizer, self.data_order)
        self.history = list(ckpt["history"])
        self.curve = list(ckpt.get("curve", []))
        self.cost = dict(ckpt.get("cost", self.cost))
        self.start_epoch = int(ckpt["epoch"]) + 1

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` as if the run had never stopped."""
        return {
            "config": self.config,
            "config_key": self.key,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "data_rng": self.data_order.get_state(),
            "history": self.history,
            "curve": self.curve,
            "cost": self.cost,
        }

    def summary(self) -> dict[str, Any]:
        """Final losses, training seconds, parameter count and measured costs."""
        history = self.history
        last = history[-1] if history else {}
        return {
            "epochs_completed": len(history),
            "train_seconds": sum(r["seconds"] for r in history),
            "seconds_per_epoch": sum(r["seconds"] for r in history) / max(len(history), 1),
            "n_params": count_parameters(self.model),
            **self.cost,
            "final_train_mse_per_pixel": last.get("train_mse_per_pixel", float("nan")),
            "final_val_mse_per_pixel": last.get("val_mse_per_pixel", float("nan")),
            "device": str(self.device),
        }
