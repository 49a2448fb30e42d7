"""The study's splits: official parts split into train/val/test, resized, synthetic, loaded.

Splits follow one convention for both MNIST-like datasets: ``train = train[:50000]``,
``val = train[50000:60000]``, ``test = t10k`` (the 10 000 official test images). This is the
split of the widely used ``mnist.pkl.gz`` (Theano tutorial) file, so that file and the official
idx files give identical splits. CIFAR-10 has only 50 000 training images, so its validation
images come out of them: :data:`CIFAR10_SPLIT_DEFINITION`.

Resizing happens in exactly one place, :func:`resize_to`; :func:`load_split` is how every
later stage reads a split back, checked against what the data stage wrote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro.config import SPLIT_SIZES, SYNTHETIC_CHANNELS
from repro.data_checksums import corrupt_error
from repro.data_decode import IMAGE_HW, RawParts
from repro.errors import ChecksumError, CorruptFileError
from repro.io import load_torch, read_json, sha256_file

SPLITS: tuple[str, ...] = tuple(SPLIT_SIZES)

#: Number of examples per split for MNIST and Fashion-MNIST (see the module docstring).
SPLIT_DEFINITION = "train = train[:50000], val = train[50000:60000], test = t10k[:10000]"
#: CIFAR-10's split: its 50 000 training images in batch order (data_batch_1 .. 5), the last
#: 5 000 held out for validation (the usual 45k/5k split), and the 10 000 official test images.
CIFAR10_SPLIT_DEFINITION = (
    "train = data_batch_1..5[:45000], val = data_batch_1..5[45000:50000], test = test_batch[:10000]"
)

RESIZE_METHOD = (
    "torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=True) "
    "on float32 values 0..255, then round-half-to-even and clamp to uint8; identity at size 28"
)
CIFAR10_RESIZE_METHOD = "none: CIFAR-10 is kept at its native 32x32 (data.image_size must be 32)"

SYNTHETIC_SEED = 20200514
SYNTHETIC_DEFAULT_SIZES: dict[str, int] = {"train": 512, "val": 128, "test": 128}
SYNTHETIC_RULE = (
    "one Gaussian-profile stroke through the image centre (jittered) whose orientation is "
    "label * 18 degrees (+-4.5), plus one faint random blob; torch.Generator seeded with "
    f"{SYNTHETIC_SEED} + split index (train 0, val 1, test 2), float64 rendering"
)
SYNTHETIC_RGB_RULE = (
    "3 channels: the same stroke and blob, each channel scaled by its own gain (stroke "
    "0.55..1, blob 0.3..1 per image and channel), drawn after all 1-channel draws"
)


def synthetic_split(n: int, split: str, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic procedural 28x28 uint8 images and int64 labels 0-9 (no download).

    Why: the test suite and the end-to-end smoke test need image data that is tiny, offline and
    learnable (the label is visible in the image: a stroke whose orientation encodes it). See
    :data:`SYNTHETIC_RULE`. Rendering is float64 for bit-stable results on one torch version.
    Images are N x 28 x 28 for ``channels=1``; ``channels=3`` gives N x 3 x 28 x 28 colour
    images (:data:`SYNTHETIC_RGB_RULE`), so the 3-channel path of training and evaluation
    (CIFAR-10's) can be tested offline. The colour gains are drawn after every other random
    number, so ``channels=3`` leaves the 1-channel images, labels and geometry unchanged.
    """
    if n < 0:
        raise ValueError(f"synthetic split size must be >= 0, got {n}")
    if channels not in SYNTHETIC_CHANNELS:
        raise ValueError(f"channels must be one of {list(SYNTHETIC_CHANNELS)}, got {channels!r}")
    g = torch.Generator().manual_seed(SYNTHETIC_SEED + SPLITS.index(split))
    f64 = torch.float64

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=f64)

    labels = torch.randint(0, 10, (n,), generator=g)
    angle = labels.to(f64) * (math.pi / 10) + u(-math.pi / 40, math.pi / 40)
    cx, cy, half, width = u(11, 17), u(11, 17), u(6, 10), u(1.0, 1.8)
    bx, by, bsig, bamp = u(4, 24), u(4, 24), u(1.5, 3.0), u(0.3, 0.7)
    if channels == 3:
        stroke_gain = 0.55 + 0.45 * torch.rand(n, 3, 1, 1, generator=g, dtype=f64)
        blob_gain = 0.3 + 0.7 * torch.rand(n, 3, 1, 1, generator=g, dtype=f64)

    coords = torch.arange(IMAGE_HW, dtype=f64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    shape = (n, IMAGE_HW, IMAGE_HW) if channels == 1 else (n, channels, IMAGE_HW, IMAGE_HW)
    images = torch.empty(shape, dtype=torch.uint8)
    for s in range(0, n, 4096):  # chunked: bounded memory for large n
        sl = slice(s, s + 4096)

        def col(t: torch.Tensor, sl: slice = sl) -> torch.Tensor:
            return t[sl].view(-1, 1, 1)

        dx, dy = torch.cos(col(angle)), torch.sin(col(angle))
        px, py = xx - col(cx), yy - col(cy)
        along = (px * dx + py * dy).clamp(-col(half), col(half))
        dist2 = (px - along * dx) ** 2 + (py - along * dy) ** 2
        stroke = torch.exp(-dist2 / (2 * col(width) ** 2))
        blob = col(bamp) * torch.exp(
            -((xx - col(bx)) ** 2 + (yy - col(by)) ** 2) / (2 * col(bsig) ** 2)
        )
        if channels == 1:
            picture = stroke + blob
        else:
            picture = stroke[:, None] * stroke_gain[sl] + blob[:, None] * blob_gain[sl]
        images[sl] = torch.round(picture.clamp(0, 1) * 255).to(torch.uint8)
    return images, labels


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images (N x H x W or N x C x H x W) to uint8 N x C x size x size.

    GON.py resized with torchvision ``Resize(32)`` on PIL images (bilinear, antialiased) and
    then ``ToTensor``. This is the tensor equivalent: bilinear interpolation with antialiasing
    (``F.interpolate(mode="bilinear", align_corners=False, antialias=True)``) on float32 values
    in 0..255, rounded half-to-even and clamped back to uint8, so the stored data stay exact
    bytes and every later stage sees the same pixels. PIL computes in 8-bit fixed point, so a
    pixel may differ from PIL's by one grey level. This function is the only place resizing
    happens in the study (:data:`RESIZE_METHOD` is recorded in the data manifest); for
    ``size`` equal to the input size the images are returned unchanged (only a channel axis is
    added to N x H x W input).
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"resize_to expects uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"resize_to expects N x H x W or N x C x H x W square images, got {tuple(images.shape)}"
        )
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if size == images.shape[-1]:
        return images
    out = F.interpolate(
        images.to(torch.float32),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return torch.round(out).clamp_(0, 255).to(torch.uint8)


def split_raw_parts(
    raw: RawParts, origin: str, sizes: Mapping[str, int]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Split the decoded official train / test parts: the first ``sizes["train"]`` training
    images train, the rest validate (:data:`SPLIT_DEFINITION`, :data:`CIFAR10_SPLIT_DEFINITION`).
    """
    n_tr, n_va, n_te = sizes["train"], sizes["val"], sizes["test"]
    if len(raw.train_images) != n_tr + n_va or len(raw.train_labels) != n_tr + n_va:
        raise corrupt_error(
            origin,
            f"train part has {len(raw.train_images)} images / "
            f"{len(raw.train_labels)} labels, expected {n_tr + n_va}",
        )
    if len(raw.test_images) != n_te or len(raw.test_labels) != n_te:
        raise corrupt_error(
            origin,
            f"test part has {len(raw.test_images)} images / "
            f"{len(raw.test_labels)} labels, expected {n_te}",
        )
    for labels in (raw.train_labels, raw.test_labels):
        if labels.size and labels.max() > 9:
            raise corrupt_error(origin, "labels outside 0..9")

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x).copy())

    return {
        "train": (t(raw.train_images[:n_tr]), t(raw.train_labels[:n_tr]).long()),
        "val": (t(raw.train_images[n_tr:]), t(raw.train_labels[n_tr:]).long()),
        "test": (t(raw.test_images), t(raw.test_labels).long()),
    }


def _manifest_sha256(manifest: Path, split: str) -> str | None:
    """The SHA-256 the data stage recorded for ``<split>.pt``, or None without a manifest."""
    if not manifest.is_file():
        return None  # a data directory made outside the pipeline (tests, synthetic splits)
    try:
        return read_json(manifest).get("files", {}).get(split, {}).get("sha256")
    except (ValueError, AttributeError) as err:
        raise CorruptFileError(
            f"{manifest}: not a data manifest ({err}); re-run the data stage "
            f"(dvc repro data@{manifest.name.removesuffix('.manifest.json')})"
        ) from err


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``data_dir/<split>.pt`` and check it is what :func:`repro.data.prepare_dataset` writes.

    Why the checks: every consumer (training, evaluation, reports) assumes uint8 images
    N x C x H x W (C = 1, or 3) and int64 labels N; a stale or hand-edited file should fail
    here with a clear fix rather than deep inside a model. Next to ``data_dir`` the data
    stage's manifest (``<data_dir>.manifest.json``) records each file's SHA-256: when it is
    there, the file must match it, so an altered file that still has the right shapes is
    refused too.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    path = Path(data_dir) / f"{split}.pt"
    fix = f"re-run the data stage: dvc repro data@{Path(data_dir).name}"
    try:
        obj = load_torch(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: file not found; {fix}") from err
    except ValueError as err:
        raise ValueError(f"{err}; {fix}") from err

    def bad(problem: str) -> ValueError:
        return ValueError(f"{path}: {problem}; {fix}")

    manifest = Path(data_dir).parent / f"{Path(data_dir).name}.manifest.json"
    expected = _manifest_sha256(manifest, split)
    if expected is not None and (actual := sha256_file(path)) != expected:
        raise ChecksumError(
            f"{path}: SHA-256 {actual} differs from the {expected} that {manifest} recorded when "
            f"the data stage wrote it: the file was altered or replaced; {fix}"
        )

    if not isinstance(obj, dict) or set(obj) != {"images", "labels"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise bad(f"expected a dict with keys ['images', 'labels'], got {keys}")
    images, labels = obj["images"], obj["labels"]
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise bad(
            f"images must be a uint8 tensor, got {getattr(images, 'dtype', type(images).__name__)}"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise bad(f"images must be N x C x H x W with C in (1, 3), got shape {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        got = getattr(labels, "dtype", type(labels).__name__)
        shape = tuple(getattr(labels, "shape", ()))
        raise bad(f"labels must be a 1-D int64 tensor, got {got} of shape {shape}")
    if len(images) != len(labels):
        raise bad(f"{len(images)} images but {len(labels)} labels")
    return images, labels
