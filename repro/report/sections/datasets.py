"""The per-dataset sections: headline table, references, BatchNorm modes, batch-order spread.

One :class:`DatasetSection` per dataset listed in params (plus any found on disk), built from
the main runs and their summary (:func:`repro.report.sections.results.summarise`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from repro.report.formatting import ordered
from repro.report.labels import bn_label, dataset_label, method_label
from repro.report.loaders import Run
from repro.report.sections.results import (
    SPLITS,
    UNITS,
    Comparison,
    bn_modes_of,
    ci_of,
    compare_methods,
    run_loss,
)
from repro.stats import MeanCI, mean_or_none


@dataclass(frozen=True)
class HeadlineRow:
    """One method × nz in the headline BN mode: held-out test loss over seeds, both units."""

    method: str
    nz: int
    sse: MeanCI
    mse: MeanCI | None

    @property
    def n(self) -> int:
        return self.sse.n


@dataclass(frozen=True)
class ReferenceRow:
    """A reference loss (all-zero image, mean training image, PCA), computed once, no seeds."""

    name: str
    sse: float
    mse: float


@dataclass(frozen=True)
class BNRow:
    """One method × nz × BN mode: validation and test loss over seeds in both units (None
    where not measured)."""

    method: str
    nz: int
    bn: str
    val_sse_per_image: MeanCI | None
    val_mse_per_pixel: MeanCI | None
    test_sse_per_image: MeanCI | None
    test_mse_per_pixel: MeanCI | None

    @property
    def n(self) -> int:
        """Seeds of the most complete cell."""
        cells = (
            self.val_sse_per_image,
            self.val_mse_per_pixel,
            self.test_sse_per_image,
            self.test_mse_per_pixel,
        )
        return max((c.n for c in cells if c is not None), default=0)


@dataclass(frozen=True)
class BNRatio:
    """Running / batch statistics test loss of one method × nz: the means over the seeds with
    both, the per-seed ratios and the mean test latent norm ‖z‖ per mode (None: not recorded)."""

    method: str
    nz: int
    running: float
    batch: float
    per_seed: tuple[float, ...]  # seeds with a positive batch loss
    latent_norm_running: float | None
    latent_norm_batch: float | None
    n: int

    @property
    def ratio(self) -> float:
        """Ratio of the means."""
        return self.running / self.batch if self.batch > 0 else math.inf

    @property
    def ratio_min(self) -> float:
        return min(self.per_seed) if self.per_seed else math.nan

    @property
    def ratio_max(self) -> float:
        return max(self.per_seed) if self.per_seed else math.nan


@dataclass(frozen=True)
class SpreadRow:
    """Batch-order spread of one method × nz: the test loss re-evaluated with the test set
    shuffled, per run (``n`` runs measured it), next to the mean test loss in the headline mode."""

    method: str
    nz: int
    n: int
    shuffles: tuple[int, ...]
    std_mean: float  # mean over runs of the std over shuffles
    max_abs_diff: float  # largest absolute difference over runs
    mean_loss: float  # NaN when no run has a headline test loss

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.mean_loss if self.mean_loss > 0 else math.nan


@dataclass(frozen=True)
class DatasetSection:
    """Everything the template shows for one dataset (status "not run" without runs)."""

    name: str
    label: str
    nzs: tuple[int, ...] = ()
    headline_rows: tuple[HeadlineRow, ...] = ()
    reference_rows: tuple[ReferenceRow, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    missing_methods: tuple[str, ...] = ()
    bn_rows: tuple[BNRow, ...] = ()
    bn_ratios: tuple[BNRatio, ...] = ()
    spread_rows: tuple[SpreadRow, ...] = ()

    @property
    def status(self) -> str:
        return "run" if self.nzs else "not run"


def _latent_norm(run: Run, bn_mode: str) -> float | None:
    """Mean L2 norm of the test latents in one BN mode (absent in older metrics files)."""
    value = run.metrics.get("losses", {}).get(bn_mode, {}).get("test", {}).get("latent_norm")
    return None if value is None else float(value)


def _headline_rows(
    results: pd.DataFrame, dataset: str, methods: Sequence[str], nzs: Sequence[int], bn: str
) -> tuple[tuple[HeadlineRow, ...], tuple[Comparison, ...]]:
    """Test loss per method × nz in the headline mode; per nz the best method vs the runner-up."""
    rows, comparisons = [], []
    for nz in nzs:
        cis: dict[str, MeanCI] = {}
        for method in methods:
            key = {"dataset": dataset, "method": method, "nz": nz, "bn_mode": bn, "split": "test"}
            sse = ci_of(results, "sse_per_image", **key)
            if sse is None:
                continue
            cis[method] = sse
            mse = ci_of(results, "mse_per_pixel", **key)
            rows.append(HeadlineRow(method=method_label(method), nz=nz, sse=sse, mse=mse))
        comparison = compare_methods(cis, nz)
        if comparison is not None:
            comparisons.append(comparison)
    return tuple(rows), tuple(comparisons)


def _reference_rows(
    refs: pd.DataFrame, dataset: str, nzs: Sequence[int]
) -> tuple[ReferenceRow, ...]:
    sel = refs[refs["dataset"] == dataset]
    sel = sel[sel["nz"].isna() | sel["nz"].isin(list(nzs))]
    return tuple(
        ReferenceRow(name=r["name"], sse=r["sse_per_image"], mse=r["mse_per_pixel"])
        for _, r in sel.iterrows()
    )


def _bn_rows(
    results: pd.DataFrame,
    dataset: str,
    methods: Sequence[str],
    nzs: Sequence[int],
    modes: Sequence[str],
) -> tuple[BNRow, ...]:
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
                rows.append(BNRow(method=method_label(method), nz=nz, bn=bn_label(mode), **cells))
    return tuple(rows)


def _bn_ratios(
    runs: Sequence[Run], methods: Sequence[str], nzs: Sequence[int]
) -> tuple[BNRatio, ...]:
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
            norms = {
                mode: [v for r in group if (v := _latent_norm(r, mode)) is not None]
                for mode in ("running", "batch")
            }
            out.append(
                BNRatio(
                    method=method_label(method),
                    nz=nz,
                    running=sum(p[0] for p in pairs) / len(pairs),
                    batch=sum(p[1] for p in pairs) / len(pairs),
                    per_seed=tuple(a / b for a, b in pairs if b > 0),
                    latent_norm_running=mean_or_none(norms["running"]),
                    latent_norm_batch=mean_or_none(norms["batch"]),
                    n=len(pairs),
                )
            )
    return tuple(out)


def _spread_rows(
    runs: Sequence[Run], methods: Sequence[str], nzs: Sequence[int], bn: str
) -> tuple[SpreadRow, ...]:
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
            losses = [
                v for r in group if (v := run_loss(r, bn, "test", "sse_per_image")) is not None
            ]
            out.append(
                SpreadRow(
                    method=method_label(method),
                    nz=nz,
                    n=len(spreads),
                    shuffles=tuple(sorted({int(s.get("shuffles", 0)) for s in spreads})),
                    std_mean=sum(stds) / len(stds),
                    max_abs_diff=max(float(s["test_sse_per_image_max_abs_diff"]) for s in spreads),
                    mean_loss=sum(losses) / len(losses) if losses else math.nan,
                )
            )
    return tuple(out)


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
    return [
        _dataset_section(
            dataset,
            [r for r in runs if r.dataset == dataset],
            results,
            refs,
            methods=methods,
            headline_bn=headline_bn,
        )
        for dataset in datasets
    ]


def _dataset_section(
    dataset: str,
    ds_runs: Sequence[Run],
    results: pd.DataFrame,
    refs: pd.DataFrame,
    *,
    methods: Sequence[str],
    headline_bn: str,
) -> DatasetSection:
    """One dataset's tables from its runs and the results summary."""
    if not ds_runs:
        return DatasetSection(name=dataset, label=dataset_label(dataset))
    ds_methods = ordered((r.method for r in ds_runs), methods)
    nzs = tuple(sorted({r.nz for r in ds_runs}))
    headline_rows, comparisons = _headline_rows(results, dataset, ds_methods, nzs, headline_bn)
    return DatasetSection(
        name=dataset,
        label=dataset_label(dataset),
        nzs=nzs,
        headline_rows=headline_rows,
        reference_rows=_reference_rows(refs, dataset, nzs),
        comparisons=comparisons,
        missing_methods=tuple(method_label(m) for m in methods if m not in ds_methods),
        bn_rows=_bn_rows(results, dataset, ds_methods, nzs, bn_modes_of(ds_runs)),
        bn_ratios=_bn_ratios(ds_runs, ds_methods, nzs),
        spread_rows=_spread_rows(ds_runs, ds_methods, nzs, headline_bn),
    )
