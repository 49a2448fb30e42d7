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
import pickle
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


#: The key :func:`save_torch` adds to a dict saved with ``checksum=True``.
CHECKSUM_KEY = "content_sha256"


def _feed(h: hashlib._Hash, obj: Any) -> None:
    """Feed a canonical encoding of ``obj`` (tensors by dtype, shape and bytes) into ``h``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):  # a tuple may come back as a list: same encoding
        h.update(f"L{len(obj)}:".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_sha256(obj: Any) -> str:
    """SHA-256 of what a torch file holds (not of its bytes: zip metadata may differ)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def save_torch(path: str | os.PathLike[str], obj: Any, *, checksum: bool = False) -> None:
    """``torch.save`` atomically; ``checksum=True`` stores the content's SHA-256 in the dict.

    Why the checksum: ``torch.load`` reads a file whose tensor bytes were altered (a flipped
    bit, a bad copy) without complaint; checkpoints and models carry :data:`CHECKSUM_KEY`,
    which :func:`load_torch` verifies. Data splits are instead checked against the SHA-256 of
    the whole file in their manifest (``repro.data.load_split``).
    """
    if checksum:
        if not isinstance(obj, dict) or CHECKSUM_KEY in obj:
            raise ValueError(f"checksum=True needs a dict without a {CHECKSUM_KEY!r} key")
        obj = {**obj, CHECKSUM_KEY: content_sha256(obj)}
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


def load_torch(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, containers and primitives only.

    Nothing the study reads from disk is unpickled freely. A dict saved with a checksum is
    verified, and returned without the checksum key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: file not found (run the stage that writes it, e.g. `dvc repro`)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # a class or function reference: refused, never run
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        blocked = next((ln for ln in str(err).splitlines() if "GLOBAL" in ln), first)
        raise ValueError(
            f"{path}: holds objects other than tensors, numbers, strings and containers "
            f"({blocked.strip()}); torch.load(weights_only=True) refused it without running "
            "it. This study never writes such a file: delete it and re-run its stage"
        ) from err
    except Exception as err:  # truncated zip, wrong format
        raise ValueError(
            f"{path}: cannot be read as a torch file ({type(err).__name__}: {err}); "
            "it is probably truncated or corrupt: delete it and re-run its stage"
        ) from err
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        stored = obj.pop(CHECKSUM_KEY)
        actual = content_sha256(obj)
        if stored != actual:
            raise ValueError(
                f"{path}: content SHA-256 mismatch (stored {stored}, computed {actual}): the file "
                "was altered or corrupted after it was written; delete it and re-run its stage"
            )
    return obj


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary siblings of ``path`` left by a writer that was killed mid-write.

    :func:`atomic_write` never renames a half-written temporary into place, but a SIGKILL
    leaves it behind; a stage that owns ``path`` calls this before writing it again.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return stale


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
