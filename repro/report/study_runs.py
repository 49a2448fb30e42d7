"""The records the ablation-study and control sections read: study runs, main runs, curves.

Layout read (written by the pipeline)::

    runs/studies/<study>/<cell>/{metrics.json, curves.csv}
    runs/<dataset>/<method>-nz<nz>-s<seed>/{metrics.json, curve.csv}   (main runs)

A study record nests its held-out losses split first, then BatchNorm mode; a main run's nest
BN mode first, then split. :class:`StudyRun` and :func:`main_loss` hide that difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from repro.records import StudyCellMetrics, read_record
from repro.result_files import read_frame

SPLITS = ("val", "test")
SSE, MSE = "sse_per_image", "mse_per_pixel"
# The columns of repro.train_files.CURVE_FIELDS the report reads.
CURVE_COLUMNS = ("step", "train_seconds", "test_mse_per_pixel")


@dataclass(frozen=True)
class StudyRun:
    """One method × seed of a study cell: its record from the cell's metrics.json."""

    study: str
    cell: str
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"

    @property
    def method(self) -> str:
        return str(self.record["method"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def dataset(self) -> str:
        return str(self.record["dataset"])

    @property
    def name(self) -> str:
        label = self.record.get("label", self.method)
        return f"{self.study}/{self.cell}/{label}-s{self.seed}"

    def loss(self, split: str, bn: str, unit: str = SSE) -> float | None:
        """Held-out loss; study records nest split first, then BN mode."""
        try:
            return finite_or_none(self.record["losses"][split][bn][unit])
        except (KeyError, TypeError):
            return None

    def value(self, key: str) -> float | None:
        return finite_or_none(self.record.get(key))


def finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def main_loss(run: Any, split: str, bn: str, unit: str = SSE) -> float | None:
    """Held-out loss of a main run; main metrics nest BN mode first, then split."""
    try:
        return finite_or_none(run.metrics["losses"][bn][split][unit])
    except (KeyError, TypeError):
        return None


def load_studies(studies_dir: Path) -> tuple[list[StudyRun], pd.DataFrame, list[str]]:
    """Every study run and held-out learning curve under ``runs/studies``; none when not run.

    A cell directory without metrics.json (a stage killed before scoring) is a warning, not
    an error, so a partial pipeline still yields a report.
    """
    runs: list[StudyRun] = []
    frames: list[pd.DataFrame] = []
    warnings: list[str] = []
    if not studies_dir.is_dir():
        return runs, pd.DataFrame(), warnings
    for cell_dir in sorted(p for p in studies_dir.glob("*/*") if p.is_dir()):
        study, cell = cell_dir.parent.name, cell_dir.name
        metrics_path = cell_dir / "metrics.json"
        if not metrics_path.is_file():
            warnings.append(f"`studies/{study}/{cell}` has no metrics.json (incomplete): left out")
            continue
        m = read_record(StudyCellMetrics, metrics_path)
        # The cell's training scale belongs to each of its runs (claims compare it to the
        # published protocol's).
        scale = {"epochs": m.epochs, "train_images": m.train_images}
        runs += [StudyRun(study=m.study, cell=cell, record={**scale, **r}) for r in m.runs]
        curves_path = cell_dir / "curves.csv"
        if curves_path.is_file():
            c = read_frame(curves_path)
            if not c.empty:
                frames.append(c.assign(study=study, cell=cell, dataset=m.dataset))
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return runs, curves, warnings


def read_curve(run: Any) -> pd.DataFrame | None:
    """A main run's held-out learning curve (curve.csv) sorted by step; None when absent."""
    path = Path(run.path) / "curve.csv"
    if not path.is_file():
        return None
    c = read_frame(path)
    if c.empty or any(col not in c for col in CURVE_COLUMNS):
        return None
    return c.sort_values("step")
