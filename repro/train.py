"""The training loop, readable top to bottom: :func:`fit` trains one run of the study.

What it guarantees (and why):

* **Data resident on the device** as one uint8 tensor; a batch is an index into it, converted to
  float in [0, 1] on the fly. No per-image Python loading (GON.py used a DataLoader over PIL).
* **Seeds and determinism.** The seed fixes the initialisation and the data order (its own
  ``torch.Generator``); on CPU, deterministic algorithms are enforced, so the same seed gives
  bitwise the same weights.
* **Resume.** After every epoch a checkpoint carries the configuration, model, optimizer and RNG
  states and the history, written atomically. A re-run after a crash continues from the last
  complete epoch and ends with exactly the weights of an uninterrupted run (tested on CPU).
  A checkpoint made with a different configuration is not resumed from. Checkpoints and models
  carry the SHA-256 of their content (``repro.io.save_torch(checksum=True)``): a truncated,
  altered or incomplete checkpoint is refused with its path, never resumed from or overwritten.
  A SIGKILL at any point, during a checkpoint write included, loses at most the current epoch
  (tests/test_crash_resume.py).
* **Divergence guard.** A non-finite loss or gradient (checked every 50 steps and at the last
  step on CPU; on a GPU the epoch's mean loss, to keep the queue free of host syncs), or an
  epoch loss above ``train.max_loss``, stops the run with :class:`DivergenceError` naming the
  run, epoch and step; the last good checkpoint stays intact (it is only written after an
  epoch passed these checks), and the stage's MLflow run is marked FAILED with the reason.
* **Curves and cost.** ``curve.csv`` is the held-out learning curve: the test loss (headline
  BatchNorm mode; both modes at the last point) of the first ``train.curve_images`` test images
  at step 0 and ``train.curve_points`` log-spaced optimiser steps (:func:`curve_schedule`), with
  the images seen and training seconds at each point: what convergence speed and the GON − AE
  difference along training are judged on. ``history.csv`` has the validation loss per epoch.
  Time is training time only (scoring excluded); the bytes autograd saves for the backward
  pass of one step are counted (device-independent memory cost), and CUDA's peak allocation is
  recorded on a GPU.
* Adam as in GON.py (lr 1e-4, betas 0.9/0.999; docs/protocol.md §1), batch 64, the GON.py loss
  (:func:`repro.encoders.gon_training_loss`). The last incomplete batch of an epoch is dropped so
  every step sees a full batch (GON.py's inner loss is a batch mean; see encoders).

:func:`fit` reads top to bottom as its steps; their parts live beside it: the run's state
(:mod:`repro.train_state`), its model and configuration (:mod:`repro.train_run`), its files
(:mod:`repro.train_files`), the curve and memory measurements (:mod:`repro.train_measure`) and
the device set-up (:mod:`repro.runtime`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from repro.config import Params, RunSpec
from repro.data import load_split
from repro.encoders import gon_training_loss
from repro.errors import DivergenceError
from repro.evaluate import mean_mse_per_pixel
from repro.gpu import graphed_training_step
from repro.io import save_torch
from repro.result_files import split_provenance
from repro.runtime import code_fingerprint, configure_torch, select_device, setup_device
from repro.step import training_step
from repro.train_files import (
    CHECKPOINT,
    CURVE,
    CURVE_FIELDS,
    HISTORY,
    HISTORY_FIELDS,
    MODEL,
    history_rows,
    kept,
    load_checkpoint,
    load_trained,
    remove_partial_writes,
    write_csv,
)
from repro.train_measure import SavedTensorCounter, curve_schedule
from repro.train_run import build_run_model, run_config, to_unit_float
from repro.train_state import Training

#: The loop, and its parts that callers (groups, studies, tests, bench) import from here.
__all__ = [
    "CHECKPOINT",
    "CURVE",
    "CURVE_FIELDS",
    "HISTORY",
    "MODEL",
    "build_run_model",
    "config_key",
    "configure_torch",
    "curve_schedule",
    "fit",
    "history_rows",
    "load_trained",
    "run_config",
    "select_device",
    "setup_device",
    "to_unit_float",
]

log = logging.getLogger(__name__)

#: Steps between the host-side loss and gradient checks on CPU (the last step of an epoch is
#: checked too); on a GPU only the epoch's mean loss is, to keep the queue free of host syncs.
CPU_CHECK_EVERY = 50


def config_key(config: dict[str, Any]) -> str:
    """The checkpoint key: the run's configuration and the training code's fingerprint."""
    blob = json.dumps(config, sort_keys=True) + code_fingerprint()
    return hashlib.sha256(blob.encode()).hexdigest()


def _finite_gradients(model: nn.Module) -> bool:
    """True when every parameter's gradient is finite (one reduction, one host sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


def _start(
    spec: RunSpec, params: Params, device: torch.device, run_dir: Path, data_dir: Path
) -> Training:
    """Data on the device, the seeded model, Adam and the data order: epoch 1, step 0."""
    cfg = params.train
    train_x, _ = load_split(data_dir, "train")
    val_x, _ = load_split(data_dir, "val")
    curve_x, _ = load_split(data_dir, "test")
    # The first `train_images` of the train split: every seed sees the same images, in its own order.
    train_x = train_x[: cfg.train_images].to(device)
    val_x = val_x[: cfg.val_images].to(device)
    curve_x = curve_x[: cfg.curve_images].to(device)  # the same fixed test subset for every run
    torch.manual_seed(spec.seed)
    model = build_run_model(spec, params, train_x.shape[1]).to(device)
    if cfg.cuda_graphs and device.type != "cuda":
        raise ValueError(
            f"train.cuda_graphs: true needs a CUDA device, but this run is on {device}; "
            "set train.cuda_graphs: false (or train.device: cuda on a GPU machine)"
        )
    # capturable: Adam keeps its step count on the device, as CUDA graph capture requires.
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), capturable=cfg.cuda_graphs
    )
    config = run_config(spec, params)
    return Training(
        spec=spec,
        params=params,
        device=device,
        config=config,
        key=config_key(config),
        ckpt_path=run_dir / CHECKPOINT,
        model=model,
        optimizer=optimizer,
        data_order=torch.Generator().manual_seed(spec.seed),
        train_x=train_x,
        val_x=val_x,
        curve_x=curve_x,
    )


def _resume(run: Training, on_epoch: Callable[[dict[str, float]], None] | None) -> None:
    """Continue after the last complete epoch of a checkpoint with this configuration, if any.

    ``on_epoch`` first receives the rows the checkpoint holds: the run's record (MLflow) then
    holds the whole curve.
    """
    ckpt = load_checkpoint(run.ckpt_path, run.key)
    if ckpt is None:
        return
    run.restore(ckpt)
    log.info("%s: resuming after epoch %d from %s", run.spec.name, ckpt["epoch"], run.ckpt_path)
    if on_epoch is not None:
        for row in run.history:
            on_epoch(row)


def _guard(
    run: Training, epoch: int, step: int, loss_sum: torch.Tensor, bar: tqdm
) -> Callable[[torch.Tensor], None]:
    """The check between backward and update: a non-finite loss or gradient stops the run."""

    def guard(loss: torch.Tensor) -> None:
        value = loss.item()
        if not math.isfinite(value) or not torch.isfinite(loss_sum):
            raise run.fail(f"non-finite training loss at epoch {epoch}, step {step}")
        if not _finite_gradients(run.model):
            raise run.fail(f"non-finite gradient at epoch {epoch}, step {step}")
        bar.set_postfix(mse_per_pixel=f"{value:.5f}")

    return guard


def _step(
    run: Training, x: torch.Tensor, guard: Callable | None, *, count_graph: bool
) -> torch.Tensor:
    """One optimiser step on batch ``x`` (the GON.py loss); returns its loss, on the device.

    ``count_graph``: measure the bytes the step saves for backward (the process's first step).
    """
    if run.params.train.cuda_graphs:
        if run.graphed_step is None:  # built on the first step (repro/gpu.py)
            run.graphed_step = graphed_training_step(run.model, run.optimizer, x.shape)
        return run.graphed_step(x)  # the same step, replayed as one CUDA graph
    if not count_graph:
        return training_step(run.model, run.optimizer, x, gon_training_loss, before_update=guard)
    with SavedTensorCounter() as counter:
        loss = training_step(run.model, run.optimizer, x, gon_training_loss, before_update=guard)
    run.cost["graph_bytes_per_step"] = float(counter.bytes)
    return loss


def _train_epoch(run: Training, epoch: int) -> tuple[float, float]:
    """The steps of one epoch and the curve points among them.

    Returns the mean training loss and the epoch's training seconds (curve scoring excluded).
    """
    cfg, device, n_batches = run.params.train, run.device, run.n_batches
    schedule = run.curve_steps()
    check_every = CPU_CHECK_EVERY if device.type == "cpu" else 0
    seconds_before = sum(r["seconds"] for r in run.history)
    run.model.train()
    epoch_seconds = 0.0
    t0 = time.perf_counter()
    order = torch.randperm(run.train_x.shape[0], generator=run.data_order).to(device)
    loss_sum = torch.zeros((), device=device)
    bar = tqdm(
        range(n_batches),
        desc=f"{run.spec.name} epoch {epoch}/{cfg.epochs}",
        leave=False,
        mininterval=2.0,
        disable=None,  # off when stderr is not a terminal (DVC logs, worker processes)
    )
    for step in bar:
        x = to_unit_float(run.train_x[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]])
        # On a GPU, .item() stalls the queue; there the loss is checked at the epoch's end
        # (a non-finite gradient makes the weights, then the loss, non-finite).
        check = check_every and (step % check_every == 0 or step == n_batches - 1)
        guard = _guard(run, epoch, step, loss_sum, bar) if check else None
        loss = _step(run, x, guard, count_graph=step == 0 and epoch == run.start_epoch)
        loss_sum += loss.detach()  # accumulated on the device: no host sync per step
        global_step = (epoch - 1) * n_batches + step + 1
        if global_step in schedule:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_seconds += time.perf_counter() - t0
            run.record_curve(global_step, seconds_before + epoch_seconds)
            t0 = time.perf_counter()
    train_loss = loss_sum.item() / n_batches
    epoch_seconds += time.perf_counter() - t0
    return train_loss, epoch_seconds


def _epoch_row(run: Training, epoch: int, train_loss: float, seconds: float) -> dict[str, float]:
    """The epoch's history row, once its mean loss passed the divergence checks."""
    cfg = run.params.train
    if not math.isfinite(train_loss):
        raise run.fail(f"non-finite mean training loss in epoch {epoch}")
    if train_loss > cfg.max_loss:
        raise DivergenceError(
            f"{run.spec.name}: epoch {epoch} mean loss {train_loss:.4g} exceeds train.max_loss="
            f"{cfg.max_loss}; {kept(run.ckpt_path)}"
        )
    headline, eval_batch = run.params.evaluate.headline_bn, run.params.evaluate.batch_size
    val_loss = mean_mse_per_pixel(run.model, run.val_x, batch_size=eval_batch, bn_mode=headline)
    images_seen = run.history[-1]["images_seen"] if run.history else 0
    if run.device.type == "cuda":
        run.cost["cuda_peak_bytes"] = float(torch.cuda.max_memory_allocated(run.device))
    log.info(
        "%s epoch %d: train %.5f val %.5f (%.1fs)",
        run.spec.name,
        epoch,
        train_loss,
        val_loss,
        seconds,
    )
    return {
        "epoch": epoch,
        "train_mse_per_pixel": train_loss,
        "val_mse_per_pixel": val_loss,
        "seconds": seconds,  # training only: validation scoring excluded
        "images_seen": images_seen + run.n_batches * cfg.batch_size,
    }


def _finish(run: Training, run_dir: Path, results_dir: Path) -> dict[str, Any]:
    """Write the history and curve, and ``model.pt`` once every epoch is done; the summary."""
    results_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results_dir / HISTORY, run.history, HISTORY_FIELDS)
    write_csv(results_dir / CURVE, run.curve, CURVE_FIELDS)
    summary = run.summary()
    if len(run.history) == run.params.train.epochs:
        save_torch(
            run_dir / MODEL,
            # only what training determines: equal weights give an equal file (and DVC hash)
            {
                "config": run.config,
                "state_dict": run.model.state_dict(),
                "summary": split_provenance(summary)[0],
            },
            checksum=True,
        )
    return summary


def fit(
    spec: RunSpec,
    params: Params,
    *,
    data_dir: Path,
    run_dir: Path,
    results_dir: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train one run; write ``model.pt`` and the resume ``checkpoint.pt`` into ``run_dir`` and
    ``history.csv`` and ``curve.csv`` into ``results_dir`` (default: ``run_dir``).

    ``on_epoch`` receives each epoch's history row (for MLflow), on a resume first the rows of
    the epochs the checkpoint holds. ``stop_after_epochs`` ends the
    process-local loop early (used by tests to simulate a crash between epochs).
    Returns a summary (final losses, seconds, parameter count).
    """
    device = setup_device(params)
    run = _start(spec, params, device, run_dir, data_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_dir = run_dir if results_dir is None else results_dir
    remove_partial_writes(run_dir, results_dir)  # left by a writer killed mid-write
    _resume(run, on_epoch)
    if not run.curve and 0 in run.curve_steps():
        run.record_curve(0, 0.0)  # the untrained decoder: where every curve starts
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    epochs = params.train.epochs
    last = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
    for epoch in range(run.start_epoch, last + 1):
        train_loss, seconds = _train_epoch(run, epoch)
        run.history.append(_epoch_row(run, epoch, train_loss, seconds))
        save_torch(run.ckpt_path, run.checkpoint(epoch), checksum=True)
        if on_epoch is not None:
            on_epoch(run.history[-1])
    return _finish(run, run_dir, results_dir)
