"""Obtain, verify, resize and store the image datasets the study trains and evaluates on.

Datasets: MNIST and Fashion-MNIST (grey, 28x28, resized to 32x32), CIFAR-10 (colour, native
32x32, only from torchvision's download or a mirror: see
:func:`repro.data_decode.load_cifar10_tarball`) and a synthetic stand-in made here (1 or 3
channels).

Why this module is strict: a reproducibility study is only as good as its inputs. Whichever
source the bytes come from (torchvision's download, a user's mirror directory, or the PyPI /
Debian registry fallbacks this machine can reach), they are checked twice before anything is
written: every raw file against a pinned SHA-256, and the decoded content (uint8 28x28 images
and uint8 labels, per split) against a pinned SHA-256 of the *canonical content*. The second
check makes all sources interchangeable: a manifest's content hash means the same pixels no
matter where they came from. CIFAR-10 is the exception to the second check: its tarball is
pinned, its decoded content only recorded (manifest ``raw_files_verified`` true, ``verified``
false), because no copy of it was reachable to compute the content pins from. A hash mismatch
stops the run (:class:`ChecksumError`); only a source that is *unavailable* (offline, tool
missing, file absent) lets the next source be tried.

This module is the data stage's public face: :func:`prepare_dataset` runs the steps, and the
names other code reads (:func:`load_split`, :func:`resize_to`, the pins, ...) are re-exported
here. Each step lives in one module: :mod:`repro.data_sources` (where the raw files come from),
:mod:`repro.data_checksums` (the pins and the errors a mismatch raises),
:mod:`repro.data_decode` (raw files to arrays) and :mod:`repro.data_splits` (the split
convention, resizing, the synthetic data and :func:`load_split`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from repro.config import CIFAR10_SPLIT_SIZES, SPLIT_SIZES
from repro.data_checksums import (
    CIFAR10_TARBALL,
    CIFAR10_TARBALL_MD5,
    CIFAR10_URL,
    CONTENT_SHA256,
    IDX_FILES,
    MNIST_PICKLE,
    RAW_SHA256,
    check_content,
    content_sha256,
)
from repro.data_decode import (
    CIFAR10_HW,
    RestrictedUnpickler,
    restricted_loads,
)
from repro.data_sources import (
    FASHION_DEB_DIR,
    MNIST_WHEEL_MEMBER,
    TORCHVISION_CLASS,
    TORCHVISION_SOCKET_TIMEOUT_S,
    obtain_raw,
)
from repro.data_splits import (
    CIFAR10_RESIZE_METHOD,
    CIFAR10_SPLIT_DEFINITION,
    RESIZE_METHOD,
    SPLIT_DEFINITION,
    SPLITS,
    SYNTHETIC_DEFAULT_SIZES,
    SYNTHETIC_RGB_RULE,
    SYNTHETIC_RULE,
    load_split,
    resize_to,
    split_raw_parts,
    synthetic_split,
)
from repro.errors import ChecksumError, CorruptFileError, DataSourceError
from repro.io import save_torch, sha256_bytes, sha256_file
from repro.names import DATASETS, SOURCES

logger = logging.getLogger(__name__)

DEFAULT_SOURCES: tuple[str, ...] = SOURCES

_Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _check_request(name: str, image_size: int) -> None:
    """Refuse an unknown dataset or an image size the dataset cannot be stored at."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if name == "cifar10" and image_size != CIFAR10_HW:
        # Refused, not resized: 32 is CIFAR-10's native size and the decoder's output size.
        raise ValueError(
            f"image_size must be {CIFAR10_HW} for cifar10 (its native size), got {image_size}"
        )


def _synthetic_splits(
    synthetic_sizes: Mapping[str, int] | None, channels: int
) -> tuple[_Splits, dict[str, Any]]:
    """The synthetic splits (:func:`synthetic_split`) and the manifest fields that describe them."""
    sizes = dict(SYNTHETIC_DEFAULT_SIZES if synthetic_sizes is None else synthetic_sizes)
    if set(sizes) != set(SPLITS):
        raise ValueError(
            f"synthetic_sizes must have exactly the keys {SPLITS}, got {sorted(sizes)}"
        )
    splits = {s: synthetic_split(int(sizes[s]), s, channels) for s in SPLITS}
    rule = SYNTHETIC_RULE if channels == 1 else f"{SYNTHETIC_RULE}; {SYNTHETIC_RGB_RULE}"
    fields = {
        "source": "synthetic",
        "sources_tried": [],
        "raw_files": {},
        "split_definition": f"synthetic, sizes {sizes}; {rule}",
    }
    return splits, fields


def _official_splits(
    name: str, raw_dir: Path, sources: Sequence[str], mirror_dir: Path | None
) -> tuple[_Splits, str, dict[str, Any]]:
    """The verified splits of a downloaded dataset, the raw files they came from (for error
    messages) and the manifest fields that record the source and the split."""
    raw, source, tried = obtain_raw(name, sources, raw_dir, mirror_dir)
    origin = ", ".join(r["path"] for r in raw.raw_files.values())
    fields: dict[str, Any] = {"source": source}
    if name == "cifar10":
        splits = split_raw_parts(raw, origin, CIFAR10_SPLIT_SIZES)
        # The tarball matched its pinned SHA-256; the decoded content has no pin (see
        # CONTENT_SHA256), so `verified` (raw files *and* content pinned) stays false.
        fields.update(split_definition=CIFAR10_SPLIT_DEFINITION, raw_files_verified=True)
    else:
        splits = split_raw_parts(raw, origin, SPLIT_SIZES)
        fields.update(split_definition=SPLIT_DEFINITION)
    fields.update(sources_tried=tried, raw_files=raw.raw_files)
    return splits, origin, fields


def _write_splits(
    splits: _Splits,
    canons: Mapping[str, Mapping[str, str]],
    expected_content: Mapping[str, Mapping[str, str]] | None,
    out_dir: Path,
    image_size: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resize and save every split as ``out_dir/<split>.pt``; return the manifest's
    ``content_sha256`` (decoded, pinned and resized hashes) and ``files`` records."""
    content: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for split in SPLITS:
        images, labels = splits[split]
        canon = canons[split]
        native = images.shape[-1]  # the hash of the images as decoded: 28x28, CIFAR-10 32x32
        resized = resize_to(images, image_size).clone()  # clone: never save a view's storage
        labels = labels.to(torch.int64).clone()
        content[split] = {
            f"images_{native}_sha256": canon["images"],
            "labels_sha256": canon["labels"],
            "images_resized_sha256": sha256_bytes(resized.contiguous().numpy().tobytes()),
            f"expected_images_{native}_sha256": None
            if expected_content is None
            else expected_content[split]["images"],
            "expected_labels_sha256": None
            if expected_content is None
            else expected_content[split]["labels"],
        }
        path = out_dir / f"{split}.pt"
        save_torch(path, {"images": resized, "labels": labels})
        outputs[split] = {
            "path": str(path),
            "sha256": sha256_file(path),
            "images_shape": list(resized.shape),
            "images_dtype": str(resized.dtype).removeprefix("torch."),
            "labels_shape": list(labels.shape),
            "labels_dtype": str(labels.dtype).removeprefix("torch."),
        }
        logger.info(
            "wrote %s: images %s, labels %s", path, tuple(resized.shape), tuple(labels.shape)
        )
    return content, outputs


def prepare_dataset(
    name: str,
    out_dir: Path,
    *,
    raw_dir: Path,
    sources: Sequence[str] = DEFAULT_SOURCES,
    mirror_dir: Path | None = None,
    image_size: int = 32,
    synthetic_sizes: Mapping[str, int] | None = None,
    synthetic_channels: int = 1,
) -> dict[str, Any]:
    """Obtain, verify, resize and store one dataset; return its manifest.

    Sources are tried in ``sources`` order; an unavailable source is logged and skipped, a
    hash mismatch or corrupt file raises at once. Writes ``out_dir/{train,val,test}.pt`` (via
    :func:`repro.io.save_torch`) as ``{"images": uint8 N x C x S x S, "labels": int64 N}``,
    C = 1 for the grey-scale datasets and 3 for colour ones (the decoder takes its output
    channels from these files). The returned manifest records where the data came from, every
    hash (expected and actual), shapes, dtypes, the split definition and the resize method, so
    that a result can be traced back to exact input bytes. ``synthetic_sizes`` and
    ``synthetic_channels`` apply to ``name="synthetic"`` only.
    """
    _check_request(name, image_size)
    # Absolute: download tools run in temporary working directories.
    out_dir, raw_dir = Path(out_dir), Path(raw_dir).resolve()
    manifest: dict[str, Any] = {
        "dataset": name,
        "image_size": image_size,
        "resize_method": CIFAR10_RESIZE_METHOD if name == "cifar10" else RESIZE_METHOD,
        "torch_version": torch.__version__,
    }
    if name == "synthetic":
        splits, fields = _synthetic_splits(synthetic_sizes, synthetic_channels)
        origin, expected_content = "synthetic", None
    else:
        splits, origin, fields = _official_splits(name, raw_dir, sources, mirror_dir)
        expected_content = CONTENT_SHA256.get(name)
    manifest.update(fields)

    # Verify every split before writing any file: a failure leaves no partial output behind.
    canons = {split: content_sha256(*splits[split]) for split in SPLITS}
    check_content(canons, expected_content, origin)
    content, outputs = _write_splits(splits, canons, expected_content, out_dir, image_size)
    manifest.update(content_sha256=content, files=outputs, verified=expected_content is not None)
    return manifest


__all__ = [
    "CIFAR10_RESIZE_METHOD",
    "CIFAR10_SPLIT_DEFINITION",
    "CIFAR10_SPLIT_SIZES",
    "CIFAR10_TARBALL",
    "CIFAR10_TARBALL_MD5",
    "CIFAR10_URL",
    "CONTENT_SHA256",
    "DATASETS",
    "FASHION_DEB_DIR",
    "IDX_FILES",
    "MNIST_PICKLE",
    "MNIST_WHEEL_MEMBER",
    "RAW_SHA256",
    "RESIZE_METHOD",
    "SPLITS",
    "SPLIT_DEFINITION",
    "SPLIT_SIZES",
    "TORCHVISION_CLASS",
    "TORCHVISION_SOCKET_TIMEOUT_S",
    "ChecksumError",
    "CorruptFileError",
    "DataSourceError",
    "RestrictedUnpickler",
    "load_split",
    "prepare_dataset",
    "resize_to",
    "restricted_loads",
    "synthetic_split",
]
