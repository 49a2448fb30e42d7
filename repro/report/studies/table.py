"""``studies.csv``: every study summary beside the report, one row per study × cell × method ×
BatchNorm mode × split (failed runs counted).

It is separate from ``results.csv`` because a study row is identified by more than (dataset,
method, nz): the activation and the number of gradient steps too. Its columns are
:data:`STUDIES_CSV_COLUMNS`; ``mean``/``ci_*`` are in SSE per image, the ``mse_per_pixel_*``
columns are summarised from the per-pixel values the runs recorded.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro.io import atomic_write
from repro.report.formatting import STAT_COLUMNS
from repro.report.studies.common import finite_ci, modes_headline_first
from repro.report.study_runs import MSE, SPLITS, SSE, StudyRun

STUDIES_CSV_COLUMNS = [
    "study",
    "cell",
    "dataset",
    "method",
    "nz",
    "activation",
    "steps",
    "bn_mode",
    "split",
    "headline",
    "n",
    "n_failed",
    *STAT_COLUMNS,
]


def studies_table(runs: Sequence[StudyRun], *, confidence: float, headline_bn: str) -> pd.DataFrame:
    """studies.csv: one row per study × cell × method × bn_mode × split (failed runs counted)."""
    groups: dict[tuple, list[StudyRun]] = {}
    for r in runs:
        key = (
            r.study,
            r.cell,
            r.dataset,
            r.method,
            int(r.record.get("nz", 0)),
            str(r.record.get("activation", "")),
            int(r.record.get("steps", 1)),
        )
        groups.setdefault(key, []).append(r)
    out = [
        _row(key, group, mode, split, confidence=confidence, headline_bn=headline_bn)
        for key, group in groups.items()
        for mode in modes_headline_first(headline_bn)
        for split in SPLITS
    ]
    return pd.DataFrame(out, columns=STUDIES_CSV_COLUMNS)


def _row(
    key: tuple,
    group: Sequence[StudyRun],
    mode: str,
    split: str,
    *,
    confidence: float,
    headline_bn: str,
) -> dict[str, Any]:
    """One group of runs in one BN mode and split: both units' mean and interval."""
    study, cell, dataset, method, nz, act, steps = key
    ok = [r for r in group if r.ok]
    sse = finite_ci((r.loss(split, mode, SSE) for r in ok), confidence)
    mse = finite_ci((r.loss(split, mode, MSE) for r in ok), confidence)
    nan = math.nan
    return {
        "study": study,
        "cell": cell,
        "dataset": dataset,
        "method": method,
        "nz": nz,
        "activation": act,
        "steps": steps,
        "bn_mode": mode,
        "split": split,
        "headline": mode == headline_bn,
        "n": sse.n if sse else 0,
        "n_failed": len(group) - len(ok),
        "confidence": confidence,
        "unit": SSE,
        "mean": sse.mean if sse else nan,
        "ci_low": sse.low if sse else nan,
        "ci_high": sse.high if sse else nan,
        "std": sse.std if sse else nan,
        "mse_per_pixel_mean": mse.mean if mse else nan,
        "mse_per_pixel_ci_low": mse.low if mse else nan,
        "mse_per_pixel_ci_high": mse.high if mse else nan,
    }


def write_studies_csv(path: Path, table: pd.DataFrame) -> None:
    """Write ``table`` atomically (a killed report stage leaves no half-written file)."""
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())
