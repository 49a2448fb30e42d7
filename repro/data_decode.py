"""Decode the raw files of each dataset into uint8 arrays, verifying their SHA-256 first.

Readers for the idx files (MNIST, Fashion-MNIST; plain or ``.gz``), MNIST's ``mnist.pkl.gz``
and CIFAR-10's ``cifar-10-python.tar.gz``. Each reads the whole file, checks it against
:data:`repro.data_checksums.RAW_SHA256`, then parses only those verified bytes; pickles go
through :class:`RestrictedUnpickler`, so even a file whose pin were wrong could not run code.
Every reader returns the official train and test parts as :class:`RawParts`.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import struct
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repro.data_checksums import (
    CIFAR10_TARBALL,
    IDX_FILES,
    MNIST_PICKLE,
    RAW_SHA256,
    checksum_error,
    corrupt_error,
    raw_record,
)
from repro.io import sha256_bytes

IMAGE_HW = 28  # native height/width of every dataset here

CIFAR10_HW = 32  # native height/width: CIFAR-10 is never resized
CIFAR10_MEMBER_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def _numpy_reconstruct() -> Any:
    """``_reconstruct`` moved to ``numpy._core`` in numpy 2; old pickles name ``numpy.core``."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray._reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the three globals a pickled numpy array needs.

    Why: unpickling runs arbitrary callables named in the file, so a tampered pickle could
    execute code. ``mnist.pkl.gz`` references exactly ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``; anything else is refused before it is imported.
    ``numpy._core.multiarray._reconstruct`` (numpy 2's name for the same function) is admitted
    too. Use ``encoding="latin1"`` for Python-2 pickles.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Any] = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed"
            ) from None


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python-2 strings read as latin1)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _gunzip(data: bytes, path: str | Path) -> bytes:
    """Decompress, turning zlib/EOF errors into an error that names the file."""
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise corrupt_error(
            path, f"cannot be decompressed as gzip ({type(err).__name__}: {err})"
        ) from err


def _read_idx_verified(path: Path, expected: str) -> tuple[bytes, str]:
    """Read an idx file (plain or ``.gz``); return its decompressed bytes and their SHA-256."""
    raw = path.read_bytes()
    data = _gunzip(raw, path) if path.name.endswith(".gz") else raw
    actual = sha256_bytes(data)
    if actual != expected:
        what = "the decompressed content" if path.name.endswith(".gz") else "the file"
        raise checksum_error(what, path, expected, actual)
    return data, actual


def _parse_idx(data: bytes, path: str | Path, *, images: bool) -> np.ndarray:
    """Decode an idx3 (images, N x 28 x 28) or idx1 (labels, N) uint8 file."""
    ndim = 3 if images else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt_error(path, f"only {len(data)} bytes, shorter than the idx header")
    magic, *dims = struct.unpack(f">I{ndim}I", data[:header])
    if magic != 0x800 + ndim:
        raise corrupt_error(path, f"idx magic {magic:#010x}, expected {0x800 + ndim:#010x}")
    if images and tuple(dims[1:]) != (IMAGE_HW, IMAGE_HW):
        raise corrupt_error(path, f"image size {dims[1:]}, expected 28x28")
    if len(data) != header + math.prod(dims):
        raise corrupt_error(path, f"{len(data)} bytes, header promises {header + math.prod(dims)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _float_to_uint8_exact(x: np.ndarray, path: str | Path) -> np.ndarray:
    """Recover uint8 pixels from the pickle's float32 ``uint8 / 256`` values, exactly."""
    scaled = np.rint(x.astype(np.float64) * 256.0)
    if scaled.min() < 0 or scaled.max() > 255:
        raise corrupt_error(path, "pixel values outside [0, 255/256]")
    pixels = scaled.astype(np.uint8)
    if not np.array_equal(pixels.astype(np.float32) / np.float32(256.0), x):
        raise corrupt_error(path, "pixel values are not exact multiples of 1/256")
    return pixels


@dataclass
class RawParts:
    """Decoded official train (60k) and t10k (10k) parts, plus what was read to get them."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    raw_files: dict[str, dict[str, str]] = field(default_factory=dict)


def load_idx_set(name: str, files: Mapping[str, Path]) -> RawParts:
    """Verify and decode the four idx files (``files`` maps the idx name to a path)."""
    expected = RAW_SHA256[name]
    arrays: dict[str, np.ndarray] = {}
    records: dict[str, dict[str, str]] = {}
    for idx_name in IDX_FILES:
        path = files[idx_name]
        data, actual = _read_idx_verified(path, expected[idx_name])
        hashed = "decompressed content" if path.name.endswith(".gz") else "file bytes"
        records[idx_name] = raw_record(path, expected[idx_name], actual, hashed)
        arrays[idx_name] = _parse_idx(data, path, images="images" in idx_name)
    return RawParts(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"],
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"],
        raw_files=records,
    )


def load_mnist_pickle(path: Path) -> RawParts:
    """Verify and decode ``mnist.pkl.gz`` (restricted unpickling, exact float -> uint8)."""
    raw = path.read_bytes()
    expected = RAW_SHA256["mnist"][MNIST_PICKLE]
    actual = sha256_bytes(raw)
    if actual != expected:
        raise checksum_error("the file", path, expected, actual)
    payload = _gunzip(raw, path)
    try:
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = restricted_loads(payload)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as err:
        raise corrupt_error(
            path, f"not the expected pickle of 3 (images, labels) pairs ({err})"
        ) from err

    def labels(y: np.ndarray) -> np.ndarray:
        if y.min() < 0 or y.max() > 9:
            raise corrupt_error(path, "labels outside 0..9")
        return y.astype(np.uint8)

    return RawParts(
        train_images=np.concatenate(
            [_float_to_uint8_exact(tr_x, path), _float_to_uint8_exact(va_x, path)]
        ).reshape(-1, IMAGE_HW, IMAGE_HW),
        train_labels=np.concatenate([labels(tr_y), labels(va_y)]),
        test_images=_float_to_uint8_exact(te_x, path).reshape(-1, IMAGE_HW, IMAGE_HW),
        test_labels=labels(te_y),
        raw_files={MNIST_PICKLE: raw_record(path, expected, actual, "file bytes")},
    )


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four idx files in ``directory`` (plain preferred over ``.gz``), or None if any lacks."""
    found: dict[str, Path] = {}
    for idx_name in IDX_FILES:
        for candidate in (directory / idx_name, directory / f"{idx_name}.gz"):
            if candidate.is_file():
                found[idx_name] = candidate
                break
        else:
            return None
    return found


def _cifar10_batch(tar: tarfile.TarFile, batch: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch member: uint8 images N x 3 x 32 x 32 and uint8 labels N.

    A batch is a pickled dict (Python 2 ``str`` keys, read as ``str``; a re-pickled copy may
    have ``bytes`` keys, which are accepted too) whose ``data`` is a uint8 array N x 3072 (the
    red, green and blue 32x32 planes, rows in order) and ``labels`` a list of N ints 0..9. It
    is read with :func:`restricted_loads`: the only globals a batch needs are those of a numpy
    array, so the MNIST unpickler serves as it is.
    """
    member = f"{CIFAR10_MEMBER_DIR}/{batch}"
    try:
        info = tar.getmember(member)
    except KeyError:
        raise corrupt_error(path, f"has no member {member}") from None
    fh = tar.extractfile(info) if info.isfile() else None
    if fh is None:
        raise corrupt_error(path, f"member {member} is not a regular file")
    try:
        obj = restricted_loads(fh.read())
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, KeyError, IndexError) as err:
        raise corrupt_error(path, f"member {member} is not the expected pickle ({err})") from err
    if not isinstance(obj, dict):
        raise corrupt_error(path, f"member {member} holds a {type(obj).__name__}, not a dict")
    fields = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = fields.get("data"), fields.get("labels")
    n_values = 3 * CIFAR10_HW * CIFAR10_HW
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == n_values
    ):
        got = f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        raise corrupt_error(path, f"member {member}: 'data' is {got}, expected uint8 N x 3072")
    labels = np.asarray(labels if labels is not None else [])
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise corrupt_error(
            path, f"member {member}: 'labels' is not {len(data)} integers (one per image)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise corrupt_error(path, f"member {member}: labels outside 0..9")
    images = data.reshape(-1, 3, CIFAR10_HW, CIFAR10_HW)
    return images, labels.astype(np.uint8)


def load_cifar10_tarball(path: Path) -> RawParts:
    """Verify ``cifar-10-python.tar.gz`` by SHA-256, then decode its six batches in memory.

    Why this way: the whole file is read once, hashed, and only those verified bytes are
    parsed (nothing is extracted to disk, so member names cannot write outside the cache), and
    the batches are unpickled with :func:`restricted_loads` rather than ``pickle.load``, so
    even a tarball whose pinned hash were wrong could not run code. Unlike MNIST, the decoded
    content is not checked against pinned hashes (none could be computed offline; see
    :data:`repro.data_checksums.CONTENT_SHA256`): the manifest records the content hashes for
    later comparison.
    """
    raw = path.read_bytes()
    expected = RAW_SHA256["cifar10"][CIFAR10_TARBALL]
    actual = sha256_bytes(raw)
    if actual != expected:
        raise checksum_error("the file", path, expected, actual)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            train = [_cifar10_batch(tar, b, path) for b in CIFAR10_TRAIN_BATCHES]
            test_images, test_labels = _cifar10_batch(tar, CIFAR10_TEST_BATCH, path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise corrupt_error(
            path, f"cannot be read as a .tar.gz ({type(err).__name__}: {err})"
        ) from err
    return RawParts(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        raw_files={CIFAR10_TARBALL: raw_record(path, expected, actual, "file bytes")},
    )
