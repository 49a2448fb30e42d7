"""results.csv: the main runs summarised over seeds, and the helpers every results section reads.

One row per dataset × method × nz × BatchNorm mode × split (:func:`summarise`), the reference
losses as a table (:func:`references_frame`), one interval read back from the table
(:func:`ci_of`) and the best-vs-runner-up comparison (:func:`compare_methods`) that the dataset
and data-efficiency sections both print. The data-efficiency rows
(:func:`repro.report.sections.efficiency.efficiency_results`) are appended by
:func:`write_results_csv`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from repro.io import atomic_write
from repro.report.formatting import STAT_COLUMNS, ordered
from repro.report.labels import method_label
from repro.report.loaders import Run
from repro.stats import MeanCI, mean_ci

SPLITS = ("val", "test")
UNITS = ("sse_per_image", "mse_per_pixel")
REFERENCE_LABELS = {"zero_image": "all-zero image", "mean_train_image": "mean training image"}

RESULTS_COLUMNS = [
    "dataset",
    "method",
    "nz",
    "bn_mode",
    "split",
    "headline",
    "n",
    *STAT_COLUMNS,
]
# Appended for the data-efficiency rows (empty for the GON/AE rows above): the study loss in its
# own unit next to SSE per image, and what the training cost.
EFFICIENCY_COLUMNS = [
    "train_size",
    "loss",
    "loss_mean",
    "loss_ci_low",
    "loss_ci_high",
    "train_seconds_mean",
    "train_nfe_mean",
]


def run_loss(run: Run, bn_mode: str, split: str, unit: str) -> float | None:
    """One run's held-out loss in one BN mode, split and unit; None when not recorded."""
    try:
        return float(run.metrics["losses"][bn_mode][split][unit])
    except (KeyError, TypeError):
        return None


def bn_modes_of(runs: Sequence[Run]) -> list[str]:
    """The BatchNorm modes the runs were evaluated in, batch and running first."""
    modes = {mode for r in runs for mode in r.metrics.get("losses", {})}
    return ordered(modes, ("batch", "running"))


def summarise(
    runs: Sequence[Run],
    *,
    confidence: float,
    headline_bn: str,
    methods: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> pd.DataFrame:
    """results.csv: one row per dataset × method × nz × bn_mode × split.

    ``mean``/``ci_*`` are in SSE per image (the unit Table 1 is compared in); the per-pixel
    columns are summarised from the per-pixel values in metrics.json, not rescaled, so the CSV
    also exposes any inconsistency between the two.
    """
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.dataset, r.method, r.nz), []).append(r)
    for (dataset, method, nz), group in groups.items():
        for mode in bn_modes_of(group):
            for split in SPLITS:
                sse = [
                    v for r in group if (v := run_loss(r, mode, split, "sse_per_image")) is not None
                ]
                mse = [
                    v for r in group if (v := run_loss(r, mode, split, "mse_per_pixel")) is not None
                ]
                if not sse:
                    continue
                ci = mean_ci(sse, confidence)
                ci_px = mean_ci(mse, confidence) if mse else None
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "nz": nz,
                        "bn_mode": mode,
                        "split": split,
                        "headline": mode == headline_bn,
                        "n": ci.n,
                        "confidence": confidence,
                        "unit": "sse_per_image",
                        "mean": ci.mean,
                        "ci_low": ci.low,
                        "ci_high": ci.high,
                        "std": ci.std,
                        "mse_per_pixel_mean": ci_px.mean if ci_px else math.nan,
                        "mse_per_pixel_ci_low": ci_px.low if ci_px else math.nan,
                        "mse_per_pixel_ci_high": ci_px.high if ci_px else math.nan,
                    }
                )
    frame = pd.DataFrame(rows, columns=RESULTS_COLUMNS)
    if frame.empty:
        return frame
    method_order = {m: i for i, m in enumerate(ordered(frame["method"], methods))}
    dataset_order = {d: i for i, d in enumerate(ordered(frame["dataset"], datasets))}
    frame = frame.assign(
        _d=frame["dataset"].map(dataset_order), _m=frame["method"].map(method_order)
    ).sort_values(["_d", "_m", "nz", "bn_mode", "split"], kind="stable")
    return frame.drop(columns=["_d", "_m"]).reset_index(drop=True)


def references_frame(references: Mapping[str, dict[str, Any] | None]) -> pd.DataFrame:
    """Reference losses as rows (dataset, name, nz, sse_per_image, mse_per_pixel)."""
    rows = []
    for dataset, ref in references.items():
        if not ref:
            continue
        for key, label in REFERENCE_LABELS.items():
            if key in ref:
                rows.append({"dataset": dataset, "name": label, "nz": math.nan, **_units(ref[key])})
        for nz, vals in sorted(ref.get("pca", {}).items(), key=lambda kv: int(kv[0])):
            rows.append(
                {"dataset": dataset, "name": f"PCA, {nz} components", "nz": int(nz), **_units(vals)}
            )
    cols = ["dataset", "name", "nz", *UNITS]
    return pd.DataFrame(rows, columns=cols)


def _units(vals: Mapping[str, Any]) -> dict[str, float]:
    return {u: float(vals[u]) if u in vals else math.nan for u in UNITS}


def ci_of(results: pd.DataFrame, unit: str, **where: Any) -> MeanCI | None:
    """The summarised interval for one results row, or None when it was not measured."""
    sel = results
    for key, value in where.items():
        sel = sel[sel[key] == value]
    if sel.empty:
        return None
    r = sel.iloc[0]
    if unit == "sse_per_image":
        return MeanCI(
            mean=r["mean"], low=r["ci_low"], high=r["ci_high"], n=int(r["n"]), std=r["std"]
        )
    return MeanCI(
        mean=r["mse_per_pixel_mean"],
        low=r["mse_per_pixel_ci_low"],
        high=r["mse_per_pixel_ci_high"],
        n=int(r["n"]),
        std=math.nan,
    )


@dataclass(frozen=True)
class Comparison:
    """Which of two methods had the lower mean held-out loss, and whether the CIs overlap."""

    nz: int
    lower: str
    higher: str
    lower_ci: MeanCI
    higher_ci: MeanCI
    overlap: bool | None  # None: undefined interval (one seed)
    tie: bool

    @property
    def ratio(self) -> float:
        """higher / lower mean: how many times larger the worse method's loss is."""
        return self.higher_ci.mean / self.lower_ci.mean if self.lower_ci.mean else math.inf


def compare_methods(cis: Mapping[str, MeanCI], nz: int) -> Comparison | None:
    """Best vs runner-up by mean loss; None with fewer than two methods measured."""
    if len(cis) < 2:
        return None
    (best, best_ci), (second, second_ci) = sorted(cis.items(), key=lambda kv: kv[1].mean)[:2]
    return Comparison(
        nz=nz,
        lower=method_label(best),
        higher=method_label(second),
        lower_ci=best_ci,
        higher_ci=second_ci,
        overlap=best_ci.overlaps(second_ci),
        tie=best_ci.mean == second_ci.mean,
    )


def write_results_csv(path: Path, results: pd.DataFrame, efficiency: pd.DataFrame) -> None:
    """GON/AE rows, then the efficiency rows; the efficiency columns stay empty for the former."""
    columns = [*RESULTS_COLUMNS, *EFFICIENCY_COLUMNS]
    parts = [f.reindex(columns=columns) for f in (results, efficiency) if not f.empty]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    table["train_size"] = table["train_size"].astype("Int64")
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())
