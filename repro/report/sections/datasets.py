"""The per-dataset sections: headline table, references, BatchNorm modes, batch-order spread.

One :class:`DatasetSection` per dataset listed in params (plus any found on disk), built from
the main runs and their summary (:func:`repro.report.sections.results.summarise`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from repro.report.labels import bn_label, dataset_label, method_label
from repro.report.loaders import Run
from repro.report.sections.results import (
    SPLITS,
    UNITS,
    Comparison,
    bn_modes_of,
    ci_of,
    compare_methods,
    ordered,
    run_loss,
)
from repro.stats import MeanCI


@dataclass
class DatasetSection:
    """Everything the template shows for one dataset."""

    name: str
    label: str
    status: str  # "run" | "not run"
    nzs: list[int] = field(default_factory=list)
    headline_rows: list[dict[str, Any]] = field(default_factory=list)
    reference_rows: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    missing_methods: list[str] = field(default_factory=list)
    bn_rows: list[dict[str, Any]] = field(default_factory=list)
    bn_ratios: list[dict[str, Any]] = field(default_factory=list)
    spread_rows: list[dict[str, Any]] = field(default_factory=list)


def _latent_norm(run: Run, bn_mode: str) -> float | None:
    """Mean L2 norm of the test latents in one BN mode (absent in older metrics files)."""
    value = run.metrics.get("losses", {}).get(bn_mode, {}).get("test", {}).get("latent_norm")
    return None if value is None else float(value)


def _headline_rows(
    results: pd.DataFrame, dataset: str, methods: Sequence[str], nzs: Sequence[int], bn: str
) -> tuple[list[dict[str, Any]], list[Comparison]]:
    rows, comparisons = [], []
    for nz in nzs:
        cis: dict[str, MeanCI] = {}
        for method in methods:
            key = {"dataset": dataset, "method": method, "nz": nz, "bn_mode": bn, "split": "test"}
            sse = ci_of(results, "sse_per_image", **key)
            if sse is None:
                continue
            cis[method] = sse
            rows.append(
                {
                    "method": method_label(method),
                    "nz": nz,
                    "n": sse.n,
                    "sse": sse,
                    "mse": ci_of(results, "mse_per_pixel", **key),
                }
            )
        comparison = compare_methods(cis, nz)
        if comparison is not None:
            comparisons.append(comparison)
    return rows, comparisons


def _reference_rows(refs: pd.DataFrame, dataset: str, nzs: Sequence[int]) -> list[dict[str, Any]]:
    sel = refs[refs["dataset"] == dataset]
    sel = sel[sel["nz"].isna() | sel["nz"].isin(list(nzs))]
    return [
        {"name": r["name"], "sse": r["sse_per_image"], "mse": r["mse_per_pixel"]}
        for _, r in sel.iterrows()
    ]


def _bn_rows(
    results: pd.DataFrame,
    dataset: str,
    methods: Sequence[str],
    nzs: Sequence[int],
    modes: Sequence[str],
) -> list[dict[str, Any]]:
    rows = []
    for nz in nzs:
        for method in methods:
            for mode in modes:
                key = {"dataset": dataset, "method": method, "nz": nz, "bn_mode": mode}
                cells = {
                    f"{split}_{unit}": ci_of(results, unit, split=split, **key)
                    for split in SPLITS
                    for unit in UNITS
                }
                if all(v is None for v in cells.values()):
                    continue
                n = max((c.n for c in cells.values() if c is not None), default=0)
                rows.append(
                    {
                        "method": method_label(method),
                        "nz": nz,
                        "bn": bn_label(mode),
                        "n": n,
                        **cells,
                    }
                )
    return rows


def _bn_ratios(
    runs: Sequence[Run], methods: Sequence[str], nzs: Sequence[int]
) -> list[dict[str, Any]]:
    """running / batch test loss per method: ratio of means and per-seed range."""
    out = []
    for nz in nzs:
        for method in methods:
            group = [r for r in runs if r.method == method and r.nz == nz]
            pairs = [
                (run_v, batch_v)
                for r in group
                if (run_v := run_loss(r, "running", "test", "sse_per_image")) is not None
                and (batch_v := run_loss(r, "batch", "test", "sse_per_image")) is not None
            ]
            if not pairs:
                continue
            running_mean = sum(p[0] for p in pairs) / len(pairs)
            batch_mean = sum(p[1] for p in pairs) / len(pairs)
            per_seed = [a / b for a, b in pairs if b > 0]
            norms = {
                mode: [v for r in group if (v := _latent_norm(r, mode)) is not None]
                for mode in ("running", "batch")
            }
            out.append(
                {
                    "method": method_label(method),
                    "nz": nz,
                    "n": len(pairs),
                    "running": running_mean,
                    "batch": batch_mean,
                    "ratio": running_mean / batch_mean if batch_mean > 0 else math.inf,
                    "ratio_min": min(per_seed) if per_seed else math.nan,
                    "ratio_max": max(per_seed) if per_seed else math.nan,
                    "latent_norm_running": sum(norms["running"]) / len(norms["running"])
                    if norms["running"]
                    else None,
                    "latent_norm_batch": sum(norms["batch"]) / len(norms["batch"])
                    if norms["batch"]
                    else None,
                }
            )
    return out


def _spread_rows(
    runs: Sequence[Run], methods: Sequence[str], nzs: Sequence[int], bn: str
) -> list[dict[str, Any]]:
    """Batch-order spread of the test loss, relative to the loss itself, per configuration."""
    out = []
    for nz in nzs:
        for method in methods:
            group = [r for r in runs if r.method == method and r.nz == nz]
            spreads = [
                r.metrics["batch_order_spread"]
                for r in group
                if r.metrics.get("batch_order_spread")
            ]
            if not spreads:
                continue
            stds = [float(s["test_sse_per_image_std"]) for s in spreads]
            diffs = [float(s["test_sse_per_image_max_abs_diff"]) for s in spreads]
            losses = [
                v for r in group if (v := run_loss(r, bn, "test", "sse_per_image")) is not None
            ]
            mean_loss = sum(losses) / len(losses) if losses else math.nan
            out.append(
                {
                    "method": method_label(method),
                    "nz": nz,
                    "n": len(spreads),
                    "shuffles": sorted({int(s.get("shuffles", 0)) for s in spreads}),
                    "std_mean": sum(stds) / len(stds),
                    "max_abs_diff": max(diffs),
                    "relative": max(diffs) / mean_loss if mean_loss > 0 else math.nan,
                }
            )
    return out


def dataset_sections(
    datasets: Sequence[str],
    runs: Sequence[Run],
    results: pd.DataFrame,
    refs: pd.DataFrame,
    *,
    methods: Sequence[str],
    headline_bn: str,
) -> list[DatasetSection]:
    """One section per dataset listed in params (plus any found on disk); absent ones 'not run'."""
    sections = []
    for dataset in datasets:
        ds_runs = [r for r in runs if r.dataset == dataset]
        section = DatasetSection(
            name=dataset, label=dataset_label(dataset), status="run" if ds_runs else "not run"
        )
        if ds_runs:
            ds_methods = ordered((r.method for r in ds_runs), methods)
            section.nzs = sorted({r.nz for r in ds_runs})
            section.missing_methods = [method_label(m) for m in methods if m not in ds_methods]
            section.headline_rows, section.comparisons = _headline_rows(
                results, dataset, ds_methods, section.nzs, headline_bn
            )
            section.reference_rows = _reference_rows(refs, dataset, section.nzs)
            section.bn_rows = _bn_rows(
                results, dataset, ds_methods, section.nzs, bn_modes_of(ds_runs)
            )
            section.bn_ratios = _bn_ratios(ds_runs, ds_methods, section.nzs)
            section.spread_rows = _spread_rows(ds_runs, ds_methods, section.nzs, headline_bn)
        sections.append(section)
    return sections
