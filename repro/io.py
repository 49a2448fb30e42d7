"""Crash-safe file output and hashing.

Every file the study writes goes through :func:`atomic_write`: the bytes land in a temporary
file in the same directory and are moved into place with :func:`os.replace`, which is atomic on
POSIX. A stage killed mid-write therefore leaves either the old file or the new one, never a
half-written file that a later stage could mistake for a valid result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty JSON atomically (sorted keys: stable diffs in git)."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, naming the file if it is missing or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: file not found (run the stage that writes it, e.g. `dvc repro`)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it and re-run its stage") from err


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` atomically."""
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


def load_torch(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, containers and primitives only.

    Nothing the study reads from disk is unpickled freely.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: file not found (run the stage that writes it, e.g. `dvc repro`)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, wrong format, ...
        raise ValueError(
            f"{path}: cannot be read as a torch file ({type(err).__name__}: {err}); "
            "it is probably truncated or corrupt: delete it and re-run its stage"
        ) from err


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
