"""Figures of the report: training curves and held-out test losses.

One seaborn theme for every figure, so the report reads as one document; every axis names its
unit, because the study's two loss reductions (MSE per pixel, SSE per image) differ by the
number of pixels and are easy to confuse. Figures are written with :func:`repro.io.atomic_write`
so an interrupted report run never leaves a truncated PNG behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report stage runs on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from repro.io import atomic_write  # noqa: E402
from repro.stats import mean_ci  # noqa: E402

DPI = 150

DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
METHOD_LABELS = {"gon": "GON", "ae": "AE"}
BN_LABELS = {"batch": "BN batch statistics", "running": "BN running statistics"}
SPLIT_LABELS = {"train": "train", "val": "validation"}

X_LABELS = {
    "epoch": "epoch",
    "images_seen": "training images seen (images)",
    "wall_seconds": "training wall-clock time (s)",
}
MSE_LABEL = "reconstruction loss (MSE per pixel)"
SSE_TEST_LABEL = "held-out test loss (SSE per image)"

HISTORY_COLUMNS = ("dataset", "method", "nz", "seed", "epoch", "split", "mse_per_pixel")
SUMMARY_COLUMNS = ("dataset", "method", "nz", "bn_mode", "split", "mean", "ci_low", "ci_high", "n")
REFERENCE_COLUMNS = ("dataset", "name", "nz", "sse_per_image")

# Reference lines: grey, told apart by dash pattern so they never compete with method colours.
_REFERENCE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


def set_theme() -> None:
    """Apply the study's single figure theme (called by every plotting function)."""
    sns.set_theme(style="whitegrid", context="paper")


def dataset_label(name: str) -> str:
    """Human name of a dataset id; unknown ids are shown as they are."""
    return DATASET_LABELS.get(name, name)


def method_label(name: str) -> str:
    """Human name of a method id (``gon`` → ``GON``); unknown ids are upper-cased."""
    return METHOD_LABELS.get(name, name.upper())


def bn_label(mode: str) -> str:
    """Human name of a BatchNorm evaluation mode."""
    return BN_LABELS.get(mode, f"BN {mode}")


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail with the missing column names instead of a KeyError deep inside seaborn."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{what}: no rows to plot")


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and free it (figures hold a lot of memory)."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _wants_log_scale(values: pd.Series | np.ndarray, span: float = 20.0) -> bool:
    """Log scale when positive values span more than ``span``×, so early epochs do not flatten the rest."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    return arr.size > 1 and float(arr.max() / arr.min()) > span


def _readable_log_axis(ax: plt.Axes) -> None:
    """Log y axis labelled at 1-2-5 steps in plain numbers: decades alone leave most panels
    with one or two labels, and 1e-2 notation is harder to read against the tables."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _t_interval(confidence: float) -> Callable[[pd.Series], tuple[float, float]]:
    """Seaborn ``errorbar`` callable giving the same Student-t interval as the tables.

    Seaborn's own "ci" is a bootstrap, which with three seeds is far too narrow and would make
    the bands disagree with the numbers printed next to them.
    """

    def interval(values: pd.Series) -> tuple[float, float]:
        ci = mean_ci(np.asarray(values, dtype=float), confidence)
        return ci.low, ci.high

    return interval


def _display_histories(histories: pd.DataFrame) -> pd.DataFrame:
    """Copy with human labels, so legends and titles need no further mapping."""
    out = histories.copy()
    out["dataset"] = out["dataset"].map(dataset_label)
    out["method"] = out["method"].map(method_label)
    out["split"] = out["split"].map(lambda s: SPLIT_LABELS.get(s, s))
    out["nz"] = out["nz"].map(lambda v: f"nz = {int(v)}")
    return out


def plot_training_curves(
    histories: pd.DataFrame,
    path: str | Path,
    *,
    x: str = "epoch",
    methods: Sequence[str] = ("gon", "ae"),
    confidence: float = 0.95,
) -> Path:
    """Loss per epoch (or per second) for each method; mean and t-interval band across seeds.

    ``histories`` is long format with columns dataset, method, nz, seed, epoch, split (train /
    val), mse_per_pixel, plus ``x`` when it is not ``epoch``. One column per dataset, one row
    per nz when several were trained; hue = method, line style = split.

    With ``x="wall_seconds"`` the seeds do not share x values, so each seed is drawn as its own
    line instead of an average: the point of that view is what the training cost in time.
    """
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, got {x!r}")
    _require_columns(histories, (*HISTORY_COLUMNS, x), "plot_training_curves")
    set_theme()
    data = _display_histories(histories)
    hue_order = [method_label(m) for m in _order(histories["method"], methods)]
    several_nz = data["nz"].nunique() > 1
    n_seeds = histories.groupby(["dataset", "method", "nz"])["seed"].nunique()
    aggregate = x != "wall_seconds"
    line_kws = (
        {"errorbar": _t_interval(confidence), "estimator": "mean"}
        if aggregate
        else {"units": "seed", "estimator": None}
    )
    grid = sns.relplot(
        data=data,
        kind="line",
        x=x,
        y="mse_per_pixel",
        hue="method",
        hue_order=hue_order,
        style="split",
        style_order=[SPLIT_LABELS["train"], SPLIT_LABELS["val"]],
        col="dataset",
        row="nz" if several_nz else None,
        markers=aggregate,
        dashes=True,
        height=3.2,
        aspect=1.25,
        facet_kws={"sharey": False, "sharex": False},
        **line_kws,
    )
    if _wants_log_scale(histories["mse_per_pixel"]):
        for ax in grid.axes.flat:
            _readable_log_axis(ax)
    grid.set_axis_labels(X_LABELS[x], MSE_LABEL)
    if x == "epoch":
        for ax in grid.axes.flat:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    if several_nz:
        grid.set_titles(template="{col_name}, {row_name}")
    seeds_text = _seed_count_text(n_seeds)
    band = (
        f"line = mean, band = {confidence:.0%} t-interval over seeds ({seeds_text})"
        if aggregate
        else f"one line per seed ({seeds_text})"
    )
    grid.figure.suptitle(f"Training curves as logged during training: {band}", y=1.03)
    return _save(grid.figure, path)


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Unique values, those in ``preferred`` first in its order (stable colours and legends)."""
    seen = set(values)
    return [v for v in preferred if v in seen] + sorted(seen - set(preferred))


def _seed_count_text(counts: pd.Series) -> str:
    """'n = 3 seeds' or 'n = 1–3 seeds' when configurations differ."""
    lo, hi = int(counts.min()), int(counts.max())
    return f"n = {lo} seeds" if lo == hi else f"n = {lo}–{hi} seeds"


def _category_labels(frame: pd.DataFrame, methods: Sequence[str]) -> list[tuple[str, int, str]]:
    """(method, nz, tick label) in a stable order: methods as given, then nz ascending."""
    several_nz = frame["nz"].nunique() > 1
    order = {m: i for i, m in enumerate(methods)}
    pairs = sorted(
        {(str(m), int(nz)) for m, nz in zip(frame["method"], frame["nz"], strict=True)},
        key=lambda p: (order.get(p[0], len(order)), p[0], p[1]),
    )
    return [
        (m, nz, f"{method_label(m)}\nnz = {nz}" if several_nz else method_label(m))
        for m, nz in pairs
    ]


def _draw_references(ax: plt.Axes, refs: pd.DataFrame) -> None:
    """Horizontal lines for the scale references (zero image, mean image, PCA)."""
    for style, (_, ref) in zip(_REFERENCE_STYLES * 4, refs.iterrows(), strict=False):
        ax.axhline(
            float(ref["sse_per_image"]),
            color="0.35",
            linestyle=style,
            linewidth=1.1,
            label=str(ref["name"]),
            zorder=1,
        )


def plot_test_losses(
    summary: pd.DataFrame,
    path: str | Path,
    *,
    references: pd.DataFrame | None = None,
    methods: Sequence[str] = ("gon", "ae"),
    confidence: float = 0.95,
) -> Path:
    """Held-out test loss per method, both BatchNorm modes, with scale references.

    ``summary`` has one row per dataset × method × nz × bn_mode × split with the mean and the
    interval in SSE per image (the report's results table); only ``split == "test"`` is drawn.
    ``references`` (columns dataset, name, nz, sse_per_image) become horizontal lines, so a
    reader can see whether a model is closer to "learned" (PCA) or to "collapsed" (mean image).
    The y axis is logarithmic when the values span more than an order of magnitude: the
    running-statistics loss of GON can be orders of magnitude above the batch-statistics one.
    """
    _require_columns(summary, SUMMARY_COLUMNS, "plot_test_losses")
    test = summary[summary["split"] == "test"]
    if test.empty:
        raise ValueError("plot_test_losses: summary has no test rows")
    if references is not None and not references.empty:
        _require_columns(references, REFERENCE_COLUMNS, "plot_test_losses references")
    set_theme()
    datasets = list(dict.fromkeys(test["dataset"]))
    modes = sorted(set(test["bn_mode"]))
    palette = dict(zip(modes, sns.color_palette("colorblind", len(modes)), strict=True))
    markers = dict(zip(modes, ("o", "s", "D", "^"), strict=False))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.4 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = test[test["dataset"] == dataset]
        cats = _category_labels(rows, methods)
        width = 0.5 / max(len(modes), 1)
        for j, mode in enumerate(modes):
            offset = (j - (len(modes) - 1) / 2) * width
            for i, (method, nz, _) in enumerate(cats):
                sel = rows[
                    (rows["method"] == method) & (rows["nz"] == nz) & (rows["bn_mode"] == mode)
                ]
                if sel.empty:
                    continue
                r = sel.iloc[0]
                has_ci = math.isfinite(r["ci_low"]) and math.isfinite(r["ci_high"])
                yerr = [[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]] if has_ci else None
                ax.errorbar(
                    i + offset,
                    r["mean"],
                    yerr=yerr,
                    fmt=markers[mode],
                    color=palette[mode],
                    capsize=4,
                    markersize=6,
                    label=f"{bn_label(mode)} (n = {int(r['n'])})",
                    zorder=3,
                )
        if references is not None and not references.empty:
            nzs = set(rows["nz"].astype(int))
            refs = references[references["dataset"] == dataset]
            refs = refs[refs["nz"].isna() | refs["nz"].isin(nzs)]
            _draw_references(ax, refs)
        values = pd.concat([rows["mean"], rows["ci_high"], rows["ci_low"]])
        if references is not None and not references.empty:
            values = pd.concat(
                [values, references.loc[references["dataset"] == dataset, "sse_per_image"]]
            )
        if _wants_log_scale(values, span=10.0):
            _readable_log_axis(ax)
        ax.set_xticks(range(len(cats)), [c[2] for c in cats])
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel("method")
        ax.set_ylabel(SSE_TEST_LABEL)
    # One legend under the panels: per-panel legends covered points at the top of the range.
    legend: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.suptitle(
        f"Held-out test loss: mean and {confidence:.0%} t-interval over seeds; "
        "grey lines = reference losses"
    )
    fig.tight_layout()
    fig.legend(
        legend.values(),
        legend.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(legend), 3),
        frameon=False,
    )
    return _save(fig, path)
