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
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from repro.config import Params, RunSpec
from repro.data import load_split
from repro.encoders import LatentModel, build_model, gon_training_loss
from repro.errors import DivergenceError
from repro.evaluate import BN_MODES, mean_mse_per_pixel
from repro.gpu import graphed_training_step
from repro.io import atomic_write, load_torch, remove_stale_temporaries, save_torch
from repro.models import count_parameters
from repro.step import training_step

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
HISTORY = "history.csv"
HISTORY_FIELDS = ("epoch", "train_mse_per_pixel", "val_mse_per_pixel", "seconds", "images_seen")
CURVE = "curve.csv"
#: The held-out learning curve's loss column (headline BN mode); ``<it>_<mode>`` per BN mode.
CURVE_LOSS = "test_mse_per_pixel"
CURVE_FIELDS = (
    "step",
    "images_seen",
    "train_seconds",
    CURVE_LOSS,
    *(f"{CURVE_LOSS}_{mode}" for mode in BN_MODES),
)


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


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "train.device: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'"
        )
    return torch.device(name)


def configure_torch(device: torch.device, num_threads: int, *, tf32: bool = False) -> None:
    """Thread count, determinism and float32 precision, set deliberately, not left to defaults.

    TF32 (10-bit mantissa matmuls and convolutions on Ampere and later GPUs) is off unless
    ``train.tf32`` asks for it: PyTorch enables it for cuDNN convolutions by default, which
    would make GPU losses differ from CPU ones by more than rounding. It has no effect on CPU.
    """
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def setup_device(params: Params) -> torch.device:
    """The run's device, with threads, determinism and TF32 set from ``params.train``."""
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads, tf32=params.train.tf32)
    return device


def model_options(params: Params) -> dict[str, Any]:
    """Keyword options of :func:`repro.encoders.build_model` from params (one place)."""
    return {
        "ngf": params.model.ngf,
        "activation": params.model.activation,
        "steps": params.train.gon_steps,
        "step_size": params.train.gon_step_size,
        "learn_step_size": params.train.gon_learn_step_size,
        "inner_norm": params.train.batch_size,
        "gfe": asdict(params.gfe),
    }


def build_run_model(spec: RunSpec, params: Params, channels: int) -> LatentModel:
    return build_model(spec.method, nz=spec.nz, channels=channels, **model_options(params))


def run_config(spec: RunSpec, params: Params) -> dict[str, Any]:
    """Everything that determines a run's result; stored in checkpoints and the final model."""
    # The matrix lists (methods, seeds, nz) are left out: adding a seed must not invalidate the
    # runs that already exist. dvc.yaml declares the same keys as this stage's params.
    # train.workers is left out too: how a group shares the machine never changes a run's numbers.
    train = {
        k: v for k, v in asdict(params.train).items() if k not in ("methods", "seeds", "workers")
    }
    return {
        "run": asdict(spec),
        "model": {"ngf": params.model.ngf, "activation": params.model.activation, "nz": spec.nz},
        "train": train,
        "val_loss": {
            "batch_size": params.evaluate.batch_size,
            "bn_mode": params.evaluate.headline_bn,
        },
        "image_size": params.data.image_size,
    }


def code_fingerprint() -> str:
    """SHA-256 of the modules whose code decides a training result.

    Part of the checkpoint key: when DVC re-runs a training stage because this code changed, a
    checkpoint written by the old code must not be resumed (it would pass as the new result).
    """
    from repro import encoders, evaluate, gpu, models

    h = hashlib.sha256()
    for module in (sys.modules[__name__], encoders, evaluate, gpu, models):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def config_key(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True) + code_fingerprint()
    return hashlib.sha256(blob.encode()).hexdigest()


def to_unit_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [0, 1], as ``ToTensor()`` does."""
    return images_uint8.float().div_(255.0)


def _write_csv(path: Path, rows: list[dict[str, float]], fields: tuple[str, ...]) -> None:
    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


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


CHECKPOINT_KEYS = frozenset(
    {"config", "config_key", "epoch", "model", "optimizer", "torch_rng", "data_rng", "history"}
)


def _load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None when there is none or it belongs to other params.

    A checkpoint that cannot be read, fails its content checksum or lacks a part is refused
    (ValueError naming the path and the fix), never silently replaced: it may be the only copy
    of hours of training, and a corrupt file means something outside the study went wrong.
    """
    if not path.exists():
        return None
    ckpt = load_torch(path)  # weights_only=True; verifies the content SHA-256
    missing = CHECKPOINT_KEYS - set(ckpt) if isinstance(ckpt, dict) else CHECKPOINT_KEYS
    if missing:
        raise ValueError(
            f"{path}: not a complete training checkpoint (missing {sorted(missing)}); "
            "delete it to train this run from scratch (dvc repro)"
        )
    if ckpt.get("config_key") != key:
        log.warning("%s was written with a different configuration; starting from scratch", path)
        return None
    return ckpt


def _restore(
    ckpt: dict[str, Any],
    path: Path,
    model: LatentModel,
    optimizer: torch.optim.Optimizer,
    data_order: torch.Generator,
) -> None:
    """Load a checkpoint's states; a shape or type mismatch names the file, not a tensor."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        data_order.set_state(ckpt["data_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: its states do not fit this run ({type(err).__name__}: {err}); "
            "delete it to train this run from scratch (dvc repro)"
        ) from err


def _kept(ckpt_path: Path) -> str:
    """What a failed run leaves to resume from, for its error message."""
    if ckpt_path.exists():
        return f"the last good checkpoint {ckpt_path} is kept"
    return f"no checkpoint was written yet ({ckpt_path})"


def _finite_gradients(model: nn.Module) -> bool:
    """True when every parameter's gradient is finite (one reduction, one host sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


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
    cfg = params.train
    device = select_device(cfg.device)
    configure_torch(device, cfg.num_threads, tf32=cfg.tf32)
    config = run_config(spec, params)
    key = config_key(config)

    train_x, _ = load_split(data_dir, "train")
    val_x, _ = load_split(data_dir, "val")
    curve_x, _ = load_split(data_dir, "test")
    # The first `train_images` of the train split: every seed sees the same images, in its own order.
    train_x = train_x[: cfg.train_images].to(device)
    val_x = val_x[: cfg.val_images].to(device)
    curve_x = curve_x[: cfg.curve_images].to(device)  # the same fixed test subset for every run
    channels = train_x.shape[1]

    torch.manual_seed(spec.seed)
    model = build_run_model(spec, params, channels).to(device)
    if cfg.cuda_graphs and device.type != "cuda":
        raise ValueError(
            f"train.cuda_graphs: true needs a CUDA device, but this run is on {device}; "
            "set train.cuda_graphs: false (or train.device: cuda on a GPU machine)"
        )
    # capturable: Adam keeps its step count on the device, as CUDA graph capture requires.
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), capturable=cfg.cuda_graphs
    )
    graphed_step = None  # built on the first step when train.cuda_graphs (repro/gpu.py)
    data_order = torch.Generator().manual_seed(spec.seed)
    history: list[dict[str, float]] = []
    curve: list[dict[str, float]] = []
    cost = {"graph_bytes_per_step": float("nan"), "cuda_peak_bytes": float("nan")}
    start_epoch = 1

    run_dir.mkdir(parents=True, exist_ok=True)
    results_dir = run_dir if results_dir is None else results_dir
    ckpt_path = run_dir / CHECKPOINT
    partial = [run_dir / CHECKPOINT, run_dir / MODEL]  # left by a writer killed mid-write
    partial += [results_dir / name for name in (HISTORY, CURVE)]
    for path in partial:
        for tmp in remove_stale_temporaries(path):
            log.warning("removed %s, a partial write of a killed run", tmp)
    ckpt = _load_checkpoint(ckpt_path, key)
    if ckpt is not None:
        _restore(ckpt, ckpt_path, model, optimizer, data_order)
        history = list(ckpt["history"])
        curve = list(ckpt.get("curve", []))
        cost = dict(ckpt.get("cost", cost))
        start_epoch = int(ckpt["epoch"]) + 1
        log.info("%s: resuming after epoch %d from %s", spec.name, start_epoch - 1, ckpt_path)
        if on_epoch is not None:  # this run's record (MLflow) then holds the whole curve
            for row in history:
                on_epoch(row)

    n_batches = train_x.shape[0] // cfg.batch_size
    images_seen = history[-1]["images_seen"] if history else 0
    train_seconds = sum(r["seconds"] for r in history)
    schedule = set(curve_schedule(cfg.epochs * n_batches, cfg.curve_points))
    headline = params.evaluate.headline_bn

    def score_val() -> float:
        return mean_mse_per_pixel(
            model, val_x, batch_size=params.evaluate.batch_size, bn_mode=headline
        )

    def record_curve(step: int, seconds: float) -> None:
        """A point of the held-out learning curve: test loss (headline BN; both at the end)."""
        row: dict[str, float] = {
            "step": step,
            "images_seen": step * cfg.batch_size,
            "train_seconds": seconds,
        }
        modes = BN_MODES if step == cfg.epochs * n_batches else (headline,)
        for mode in BN_MODES:
            row[f"{CURVE_LOSS}_{mode}"] = (
                mean_mse_per_pixel(
                    model, curve_x, batch_size=params.evaluate.batch_size, bn_mode=mode
                )
                if mode in modes
                else float("nan")
            )
        row[CURVE_LOSS] = row[f"{CURVE_LOSS}_{headline}"]
        curve.append(row)

    check_every = 50 if device.type == "cpu" else 0
    if not curve and 0 in schedule:
        record_curve(0, 0.0)  # the untrained decoder: where every curve starts
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stop_after_epochs is not None and epoch > stop_after_epochs:
            break
        model.train()
        epoch_seconds = 0.0
        t0 = time.perf_counter()
        order = torch.randperm(train_x.shape[0], generator=data_order).to(device)
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(
            range(n_batches),
            desc=f"{spec.name} epoch {epoch}/{cfg.epochs}",
            leave=False,
            mininterval=2.0,
            disable=None,  # off when stderr is not a terminal (DVC logs, worker processes)
        )
        for step in bar:
            x = to_unit_float(train_x[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]])
            # On a GPU, .item() stalls the queue; there the loss is checked at the epoch's end
            # (a non-finite gradient makes the weights, then the loss, non-finite).
            check = check_every and (step % check_every == 0 or step == n_batches - 1)

            def guard(
                loss: torch.Tensor, epoch=epoch, step=step, loss_sum=loss_sum, bar=bar
            ) -> None:
                value = loss.item()
                if not math.isfinite(value) or not torch.isfinite(loss_sum):
                    raise DivergenceError(
                        f"{spec.name}: non-finite training loss at epoch {epoch}, step {step} "
                        f"(lr={cfg.lr}); {_kept(ckpt_path)}"
                    )
                if not _finite_gradients(model):
                    raise DivergenceError(
                        f"{spec.name}: non-finite gradient at epoch {epoch}, step {step} "
                        f"(lr={cfg.lr}); {_kept(ckpt_path)}"
                    )
                bar.set_postfix(mse_per_pixel=f"{value:.5f}")

            if cfg.cuda_graphs:
                if graphed_step is None:
                    graphed_step = graphed_training_step(model, optimizer, x.shape)
                loss = graphed_step(x)  # the same step, replayed as one CUDA graph
            elif step == 0 and epoch == start_epoch:
                with SavedTensorCounter() as counter:
                    loss = training_step(
                        model,
                        optimizer,
                        x,
                        gon_training_loss,
                        before_update=guard if check else None,
                    )
                cost["graph_bytes_per_step"] = float(counter.bytes)
            else:
                loss = training_step(
                    model, optimizer, x, gon_training_loss, before_update=guard if check else None
                )
            loss_sum += loss.detach()  # accumulated on the device: no host sync per step
            global_step = (epoch - 1) * n_batches + step + 1
            if global_step in schedule:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                epoch_seconds += time.perf_counter() - t0
                record_curve(global_step, train_seconds + epoch_seconds)
                t0 = time.perf_counter()
        train_loss = loss_sum.item() / n_batches
        epoch_seconds += time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise DivergenceError(
                f"{spec.name}: non-finite mean training loss in epoch {epoch} (lr={cfg.lr}); "
                f"{_kept(ckpt_path)}"
            )
        if train_loss > cfg.max_loss:
            raise DivergenceError(
                f"{spec.name}: epoch {epoch} mean loss {train_loss:.4g} exceeds train.max_loss="
                f"{cfg.max_loss}; {_kept(ckpt_path)}"
            )
        val_loss = score_val()
        images_seen += n_batches * cfg.batch_size
        train_seconds += epoch_seconds
        if device.type == "cuda":
            cost["cuda_peak_bytes"] = float(torch.cuda.max_memory_allocated(device))
        row = {
            "epoch": epoch,
            "train_mse_per_pixel": train_loss,
            "val_mse_per_pixel": val_loss,
            "seconds": epoch_seconds,  # training only: validation scoring excluded
            "images_seen": images_seen,
        }
        history.append(row)
        log.info(
            "%s epoch %d: train %.5f val %.5f (%.1fs)",
            spec.name,
            epoch,
            train_loss,
            val_loss,
            row["seconds"],
        )
        save_torch(
            ckpt_path,
            {
                "config": config,
                "config_key": key,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "data_rng": data_order.get_state(),
                "history": history,
                "curve": curve,
                "cost": cost,
            },
            checksum=True,
        )
        if on_epoch is not None:
            on_epoch(row)

    results_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(results_dir / HISTORY, history, HISTORY_FIELDS)
    _write_csv(results_dir / CURVE, curve, CURVE_FIELDS)
    summary = {
        "epochs_completed": len(history),
        "train_seconds": sum(r["seconds"] for r in history),
        "seconds_per_epoch": sum(r["seconds"] for r in history) / max(len(history), 1),
        "n_params": count_parameters(model),
        **cost,
        "final_train_mse_per_pixel": history[-1]["train_mse_per_pixel"]
        if history
        else float("nan"),
        "final_val_mse_per_pixel": history[-1]["val_mse_per_pixel"] if history else float("nan"),
        "device": str(device),
    }
    if len(history) == cfg.epochs:
        save_torch(
            run_dir / MODEL,
            {"config": config, "state_dict": model.state_dict(), "summary": summary},
            checksum=True,
        )
    return summary


def load_trained(
    run_dir: Path, spec: RunSpec, params: Params, channels: int
) -> tuple[LatentModel, dict]:
    """Rebuild a trained model from ``model.pt``; the file carries its own config and summary."""
    blob = load_torch(run_dir / MODEL)
    if blob.get("config") != run_config(spec, params):
        raise ValueError(
            f"{run_dir / MODEL}: was trained with a different configuration than params.yaml now "
            f"describes; re-run its training stage (dvc repro)"
        )
    model = build_run_model(spec, params, channels)
    model.load_state_dict(blob["state_dict"])
    return model, blob["summary"]


def history_rows(path: Path) -> list[dict[str, float]]:
    """Read ``history.csv`` back (floats)."""
    return [
        {k: float(v) for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(path.read_text()))
    ]
