"""Where and how a run computes: the device, PyTorch's threads, determinism and precision.

Every process that trains or times a model (a stage, a group worker, the GPU session) sets
these once, deliberately, instead of leaving them to PyTorch's defaults; and
:func:`code_fingerprint` names the code a training result depends on, so that a checkpoint or
a GPU session's runs are never taken for the result of other code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from repro.config import Params

#: oneDNN, behind PyTorch's CPU convolutions, picks its kernels by the CPU's instruction set, so
#: the same code and data give bitwise different conv results on an AVX-512 machine and on an
#: AVX2 one (measured here: the default study's AE, one epoch, train MSE 0.07126700954461677 on
#: AVX-512 against 0.07126700466024127 on AVX2; the MLP runs agree bitwise). Capping oneDNN at
#: AVX2 (oneDNN's "CPU dispatcher control", environment variable ONEDNN_MAX_CPU_ISA) makes every
#: x86-64 machine with AVX2 compute the committed numbers. Set on import, before any
#: convolution runs; worker processes inherit it; a value the user sets wins.
ONEDNN_ISA = "AVX2"
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", ONEDNN_ISA)

#: The modules (of this package) whose code decides a training result: the training loop, its
#: state, the run's definition, files and measurements, this set-up, the training step, the
#: models, latent encoders and scoring.
TRAINING_CODE = (
    "train",
    "train_run",
    "train_files",
    "train_measure",
    "train_state",
    "runtime",
    "step",
    "encoders",
    "evaluate",
    "gpu",
    "models",
)


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


def code_fingerprint() -> str:
    """SHA-256 of the modules whose code decides a training result (:data:`TRAINING_CODE`).

    Part of the checkpoint key: when DVC re-runs a training stage because this code changed, a
    checkpoint written by the old code must not be resumed (it would pass as the new result).
    The files are read, not imported: asking for the fingerprint loads no training code.
    """
    package = Path(__file__).parent
    h = hashlib.sha256()
    for name in TRAINING_CODE:
        h.update((package / f"{name}.py").read_bytes())
    return h.hexdigest()
