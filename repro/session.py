"""A GPU session's bookkeeping: its clock, its phases, and the one archive it writes.

:mod:`repro.gpu_session` runs the phases; :mod:`repro.gpu_import` reads the archive back. The
archive's layout is defined here once: ``session.json`` (schema :data:`SCHEMA`: the environment,
each phase's status, seconds and detail, the decided epochs, the runs and what was skipped), the
params the session ran (``params.yaml``), ``step_times.json``, the GPU tests' log and JUnit XML,
``session.log``, ``data/<dataset>.manifest.json``, and ``main/`` and ``studies/`` laid out as
under the pipeline's ``runs/`` (metrics, histories, curves, reconstruction grids; no models).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.config import Params
from repro.io import write_json

log = logging.getLogger("gpu_session")

SCHEMA = 1
ARCHIVE = "gpu_session.tar.gz"
SESSION_FILE = "session.json"
STEP_TIMES_FILE = "step_times.json"
PARAMS_FILE = "params.yaml"
TESTS_LOG, TESTS_XML, LOG_FILE = "gpu_tests.log", "gpu_tests.xml", "session.log"
#: The archive's top-level files, then its trees: the data manifests and the session's
#: ``runs/`` contents (main runs, studies), at the top so that the unpacked archive is a runs
#: directory the report reads as it reads ``runs/``.
ARCHIVE_FILES = (SESSION_FILE, PARAMS_FILE, STEP_TIMES_FILE, TESTS_LOG, TESTS_XML, LOG_FILE)
RUN_TREES = ("main", "studies")
ARCHIVE_DIRS = ("data", *RUN_TREES)
PHASES = ("environment", "data", "gpu_tests", "step_times", "train", "studies")
#: Kept back from the budget for writing the archive and the import's needs.
RESERVE_SECONDS = 15.0
#: Run files that travel in the archive (models stay behind: they are large and re-trainable).
ARCHIVED_SUFFIXES = (".json", ".csv", ".png")


def check_schema(session: dict[str, Any], path: Path) -> dict[str, Any]:
    """``session`` (read from ``path``) if this code reads its schema, else a ValueError."""
    if session.get("schema") != SCHEMA:
        raise ValueError(
            f"{path}: session schema {session.get('schema')!r}, this code reads {SCHEMA}; "
            "re-run bench/gpu_session.sh with this version, then repro gpu-import"
        )
    return session


@dataclass
class PhaseRecord:
    name: str
    status: str = "not run"  # ok | failed | skipped | not run
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Session:
    """The state of one session: its clock, phases, findings and where it writes."""

    out: Path
    work: Path
    repo: Path
    budget_s: float
    dry_run: bool
    t0: float = field(default_factory=time.perf_counter)
    phases: dict[str, PhaseRecord] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    params: Params | None = None  # the params in force (the train phase fixes the epochs)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        """Seconds left for work, the archive's reserve kept back."""
        return self.budget_s - RESERVE_SECONDS - self.elapsed()

    def phase(self, name: str, fn: Callable[[], str]) -> bool:
        """Run one phase; record ok (with ``fn``'s one-line detail) or the error; archive."""
        rec = self.phases.setdefault(name, PhaseRecord(name))
        log.info("== %s (%.0f s left)", name, self.left())
        t = time.perf_counter()
        try:
            rec.detail, rec.status = fn(), "ok"
        except Skipped as why:
            rec.status, rec.detail = "skipped", str(why)
        except Exception as err:  # recorded; the session goes on with what does not depend on it
            rec.status, rec.detail = "failed", f"{type(err).__name__}: {err}"
            log.error("%s failed:\n%s", name, traceback.format_exc())
        rec.seconds = time.perf_counter() - t
        log.info("== %s: %s in %.1f s. %s", name, rec.status, rec.seconds, rec.detail)
        self.write_archive()
        return rec.status == "ok"

    def record(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "dry_run": self.dry_run,
            "budget_seconds": self.budget_s,
            "wall_seconds": self.elapsed(),
            "phases": [dataclasses.asdict(self.phases.get(p, PhaseRecord(p))) for p in PHASES],
            **self.info,
        }

    def write_archive(self) -> Path:
        """``<out>/gpu_session.tar.gz``: session.json and every result file, written atomically."""
        write_json(self.work / SESSION_FILE, self.record())
        files = [(self.work / name, name) for name in ARCHIVE_FILES]
        files += [
            (p, f"data/{p.name}") for p in sorted((self.work / "data").glob("*.manifest.json"))
        ]
        runs = self.work / "runs"
        for tree in RUN_TREES:
            files += [
                (p, p.relative_to(runs).as_posix())
                for p in sorted((runs / tree).rglob("*"))
                if p.suffix in ARCHIVED_SUFFIXES
            ]
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{ARCHIVE}.partial"
        with tarfile.open(tmp, "w:gz") as tar:
            for path, name in files:
                if path.is_file():
                    tar.add(path, arcname=name)
        os.replace(tmp, self.out / ARCHIVE)
        return self.out / ARCHIVE


class Skipped(Exception):
    """A phase that did not run, and why (not a failure)."""
