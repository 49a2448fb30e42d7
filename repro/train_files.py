"""What a training run leaves on disk, and how it is read back.

``checkpoint.pt`` (the resume point after every epoch) and ``model.pt`` (the trained model with
its configuration and summary) in the run's model directory; ``history.csv`` (one row per
epoch) and ``curve.csv`` (the held-out learning curve) in its results directory. Checkpoints and
models carry the SHA-256 of their content (``repro.io.save_torch(checksum=True)``): reading one
that is truncated, altered or incomplete is an error naming the file, never a silent restart.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from repro.config import Params, RunSpec
from repro.encoders import LatentModel
from repro.evaluate import BN_MODES
from repro.io import load_torch, remove_stale_temporaries
from repro.result_files import provenance_path, read_rows, write_rows
from repro.train_run import build_run_model, run_config

log = logging.getLogger("repro.train")  # the training loop's logger: one name in the logs

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
CHECKPOINT_KEYS = frozenset(
    {"config", "config_key", "epoch", "model", "optimizer", "torch_rng", "data_rng", "history"}
)


def write_csv(path: Path, rows: list[dict[str, float]], fields: tuple[str, ...]) -> None:
    """``rows`` as a CSV with the header ``fields`` (seconds in the provenance sibling)."""
    write_rows(path, rows, fields)


def history_rows(path: Path) -> list[dict[str, float]]:
    """Read ``history.csv`` or ``curve.csv`` back (floats), with its provenance columns."""
    return [{k: float(v) for k, v in row.items()} for row in read_rows(path)]


def remove_partial_writes(run_dir: Path, results_dir: Path) -> None:
    """Delete what a writer killed mid-write left of this run's files (never the files)."""
    partial = [run_dir / CHECKPOINT, run_dir / MODEL]
    partial += [results_dir / name for name in (HISTORY, CURVE)]
    partial += [provenance_path(path) for path in partial[2:]]
    for path in partial:
        for tmp in remove_stale_temporaries(path):
            log.warning("removed %s, a partial write of a killed run", tmp)


def load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
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


def restore_checkpoint(
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


def kept(ckpt_path: Path) -> str:
    """What a failed run leaves to resume from, for its error message."""
    if ckpt_path.exists():
        return f"the last good checkpoint {ckpt_path} is kept"
    return f"no checkpoint was written yet ({ckpt_path})"


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
