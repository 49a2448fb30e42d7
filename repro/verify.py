"""``repro verify``: did this working tree reproduce the committed results?

After ``dvc repro`` on a fresh clone, every results file the pipeline commits (``runs/**/*.json``,
``runs/**/*.csv`` and the report's tables ``reports/*.csv``) is compared with its committed
version (``git show HEAD:<path>``). Provenance (wall-clock seconds, MLflow run ids, the device,
see :func:`repro.result_files.is_provenance`) differs on every run and is left out; everything else
must match. A file is

    identical               every compared value equal (on the same kind of CPU: expect this)
    differs within tolerance numbers differ by at most ``atol + rtol·|committed|``
    differs                 a number beyond tolerance, a different text, or a key/row added or lost

with the largest change named (where, committed → now). The report's text and figures follow
from these files and are not compared (they also carry timings).
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.report.dvc_metrics import METRICS_FILE
from repro.result_files import is_provenance, is_provenance_file

IDENTICAL, WITHIN, DIFFERS = "identical", "differs within tolerance", "differs"


# What a timing row (unit: seconds) is compared on: which claim and setting, and its verdict.
TIMING_ROW_KEPT = ("claim_id", "setting", "unit", "verdict", "claim_verdict")


def is_result_file(path: str) -> bool:
    """``runs/**/*.json``, ``runs/**/*.csv``, the report's tables ``reports/*.csv`` and its
    headline metrics ``reports/metrics.json`` (not the machine-specific benchmark JSON), never a
    provenance sibling (``*.provenance.json``: seconds and run ids, not results)."""
    if is_provenance_file(path):
        return False
    parts = Path(path).parts
    if parts[0] == "runs":
        return path.endswith((".json", ".csv"))
    return (
        parts[0] == "reports"
        and len(parts) == 2
        and (path.endswith(".csv") or parts[1] == METRICS_FILE)
    )


@dataclass(frozen=True)
class Change:
    """One compared value that is not equal: where, committed and now, relative size."""

    where: str
    committed: Any
    now: Any
    relative: float  # |now - committed| / max(|committed|, tiny); inf for text or structure


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str
    compared: int
    largest: Change | None

    def line(self) -> str:
        text = f"{self.status:<25} {self.path} ({self.compared} values)"
        if self.largest is not None:
            c = self.largest
            rel = "" if math.isinf(c.relative) else f", relative {c.relative:.2e}"
            text += f"; largest: {c.where}: {c.committed!r} -> {c.now!r}{rel}"
        return text


def _scalar_change(where: str, old: Any, new: Any) -> Change | None:
    """None for an equal value, else the change (numbers by size, anything else as text)."""
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        if old == new or (math.isnan(old) and math.isnan(new)):
            return None
        return Change(where, old, new, abs(new - old) / max(abs(old), 1e-300))
    return None if old == new else Change(where, old, new, math.inf)


def _json_changes(where: str, old: Any, new: Any) -> Iterator[Change | None]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if is_provenance(key):
                continue
            here = f"{where}.{key}" if where else key
            if key not in old or key not in new:
                yield Change(here, old.get(key, "(absent)"), new.get(key, "(absent)"), math.inf)
            else:
                yield from _json_changes(here, old[key], new[key])
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            yield Change(f"{where} length", len(old), len(new), math.inf)
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            yield from _json_changes(f"{where}[{i}]", a, b)
    else:
        yield _scalar_change(where, old, new)


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _csv_changes(old_text: str, new_text: str) -> Iterator[Change | None]:
    old = list(csv.DictReader(io.StringIO(old_text)))
    new = list(csv.DictReader(io.StringIO(new_text)))
    if len(old) != len(new):
        yield Change("rows", len(old), len(new), math.inf)
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        # A row whose unit is seconds (a timing claim) measures this machine: its verdict is
        # compared, its numbers are provenance.
        timing = "seconds" in (a.get("unit") or "")
        for col in sorted(set(a) | set(b)):
            if is_provenance(col) or (timing and col not in TIMING_ROW_KEPT):
                continue
            where = f"row {i + 1} {col}"
            if col not in a or col not in b:
                yield Change(where, a.get(col, "(absent)"), b.get(col, "(absent)"), math.inf)
            else:
                yield _scalar_change(where, _number(a[col]), _number(b[col]))


def compare_text(path: str, committed: str, now: str, *, rtol: float, atol: float) -> FileResult:
    """One file's verdict from its committed and current text."""
    if path.endswith(".json"):
        changes = list(_json_changes("", json.loads(committed), json.loads(now)))
    else:
        changes = list(_csv_changes(committed, now))
    real = [c for c in changes if c is not None]
    largest = max(real, key=lambda c: c.relative, default=None)
    if largest is None:
        status = IDENTICAL
    elif all(
        not math.isinf(c.relative) and abs(c.now - c.committed) <= atol + rtol * abs(c.committed)
        for c in real
    ):
        status = WITHIN
    else:
        status = DIFFERS
    return FileResult(path, status, len(changes), largest)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def verify(
    root: Path, *, ref: str = "HEAD", rtol: float = 1e-5, atol: float = 1e-8
) -> list[FileResult]:
    """Every committed results file at ``ref`` against the working tree."""
    paths = _git(root, "ls-tree", "-r", "--name-only", ref, "--", "runs", "reports").split()
    results = []
    for path in sorted(filter(is_result_file, paths)):
        current = root / path
        if not current.is_file():
            results.append(
                FileResult(path, DIFFERS, 0, Change("file", "present", "absent", math.inf))
            )
            continue
        committed = _git(root, "show", f"{ref}:{path}")
        results.append(
            compare_text(path, committed, current.read_text(encoding="utf-8"), rtol=rtol, atol=atol)
        )
    return results
