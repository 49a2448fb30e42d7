"""``repro gpu-import <archive>``: a GPU session's archive into ``runs/gpu/`` and ``reports/gpu/``.

The archive of :mod:`repro.gpu_session` holds ``session.json``, the params it ran, its step
times, logs, data manifests and a ``runs/`` tree laid out as the pipeline's. Importing checks it
(a tar of plain files with relative paths inside the names the session writes, a
``session.json`` of the schema this code reads), replaces ``runs/gpu/`` as a whole (unpacked
beside it first, then renamed over it: never half an import), and builds ``reports/gpu/`` with
:func:`repro.report.build_report`, the main report's code, claims and rules, given the session's
own params and provenance. The next ``dvc repro`` then re-runs the ``report`` stage (``runs/`` is
its dependency), whose "At GPU scale" section quotes the session's verdicts.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.io import read_json
from repro.session import ARCHIVE_DIRS, ARCHIVE_FILES, PARAMS_FILE, SESSION_FILE, check_schema
from repro.tracking import git_commit

if TYPE_CHECKING:
    from repro.config import Params

#: What an archive may hold at its top level; anything else is refused.
ALLOWED_TOP = {*ARCHIVE_FILES, *ARCHIVE_DIRS}


class ArchiveError(ValueError):
    """The file is not a GPU session archive this code can import."""


def _check_members(tar: tarfile.TarFile, archive: Path) -> None:
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
            raise ArchiveError(f"{archive}: refused member {m.name!r} (not a plain relative file)")
        if parts and parts[0] not in ALLOWED_TOP:
            raise ArchiveError(
                f"{archive}: unexpected member {m.name!r}; a GPU session archive holds only "
                f"{sorted(ALLOWED_TOP)} (bench/gpu_session.sh writes it)"
            )


def unpack(archive: Path, dest: Path) -> dict[str, Any]:
    """Unpack ``archive`` into ``dest`` (replaced whole); returns its session.json."""
    archive = Path(archive)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such file (the GPU session writes gpu_session.tar.gz)")
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError) as err:
        raise ArchiveError(f"{archive}: not a gzip tar archive ({err})") from err
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gpu-import-", dir=dest.parent))
    try:
        with tar:
            _check_members(tar, archive)
            tar.extractall(staging, filter="data")
        if not (staging / SESSION_FILE).is_file() or not (staging / PARAMS_FILE).is_file():
            raise ArchiveError(f"{archive}: no {SESSION_FILE} or {PARAMS_FILE} inside")
        # Refused before it replaces the previous import: a session this code cannot read.
        session = check_schema(read_json(staging / SESSION_FILE), archive)
        old = dest.with_name(dest.name + ".old")
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
        return session
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def provenance(session: dict[str, Any], params: Params, root: Path) -> dict[str, Any]:
    """The GPU report's provenance block: the session's machine and software, this checkout."""
    from repro.config import params_sha256
    from repro.runtime import code_fingerprint

    env = session.get("environment") or {}
    fingerprint = env.get("code_fingerprint")
    return {
        "git_commit": git_commit(root),
        "git_dirty": fingerprint
        != code_fingerprint(),  # the training code differs from the session's
        "params_sha256": params_sha256(params),
        "profile": params.profile,
        "torch_version": env.get("torch"),
        "cuda": env.get("cuda"),
        "device": env.get("gpu") or "cpu",
        "hardware": env.get("gpu") or env.get("cpu"),
        "python": env.get("python"),
        "generated_at": env.get("date"),
    }


def import_session(archive: Path, root: Path) -> Path:
    """``runs/gpu/`` from ``archive``, then ``reports/gpu/``; returns the report's path."""
    from repro.report import build_report
    from repro.report.sections.gpu import read_session

    runs_gpu = root / "runs" / "gpu"
    unpack(archive, runs_gpu)
    session, params = read_session(runs_gpu)
    return build_report(
        runs_gpu,
        runs_gpu / "data",
        root / "reports" / "gpu",
        params=params,
        provenance=provenance(session, params, root),
    )
