"""Figures of the main runs: training curves and held-out test losses with scale references.

Drawing helpers, theme and input schemas: :mod:`repro.report.figures.common`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from repro.report.figures.common import (
    HISTORY_COLUMNS,
    MSE_LABEL,
    REFERENCE_COLUMNS,
    SSE_TEST_LABEL,
    SUMMARY_COLUMNS,
    _order,
    _palette,
    _require_columns,
    _save,
    _seed_count_text,
    _t_interval,
    finish,
    log_if_spread,
    set_theme,
)
from repro.report.labels import SPLIT_LABELS, bn_label, dataset_label, method_label

X_LABELS = {
    "epoch": "epoch",
    "images_seen": "training images seen (images)",
    "wall_seconds": "training wall-clock time (s)",
}
# Reference lines: grey, told apart by dash pattern so they never compete with method colours.
_REFERENCE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


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
    data = histories.assign(  # human labels, so legends and titles need no further mapping
        dataset=histories["dataset"].map(dataset_label),
        method=histories["method"].map(method_label),
        split=histories["split"].map(lambda s: SPLIT_LABELS.get(s, s)),
        nz=histories["nz"].map(lambda v: f"nz = {int(v)}"),
    )
    several_nz = data["nz"].nunique() > 1
    aggregate = x != "wall_seconds"
    grid = sns.relplot(
        data=data,
        kind="line",
        x=x,
        y="mse_per_pixel",
        hue="method",
        hue_order=[method_label(m) for m in _order(histories["method"], methods)],
        style="split",
        style_order=[SPLIT_LABELS["train"], SPLIT_LABELS["val"]],
        col="dataset",
        row="nz" if several_nz else None,
        markers=aggregate,
        dashes=True,
        height=3.2,
        aspect=1.25,
        facet_kws={"sharey": False, "sharex": False},
        **(
            {"errorbar": _t_interval(confidence), "estimator": "mean"}
            if aggregate
            else {"units": "seed", "estimator": None}
        ),
    )
    for ax in grid.axes.flat:
        log_if_spread(ax, histories["mse_per_pixel"], span=20.0)
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_axis_labels(X_LABELS[x], MSE_LABEL)
    grid.set_titles(template="{col_name}, {row_name}" if several_nz else "{col_name}")
    seeds = _seed_count_text(histories.groupby(["dataset", "method", "nz"])["seed"].nunique())
    band = (
        f"line = mean, band = {confidence:.0%} t-interval over seeds ({seeds})"
        if aggregate
        else f"one line per seed ({seeds})"
    )
    grid.figure.suptitle(f"Training curves as logged during training: {band}", y=1.03)
    return _save(grid.figure, path)


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
    has_refs = references is not None and not references.empty
    if has_refs:
        _require_columns(references, REFERENCE_COLUMNS, "plot_test_losses references")
    set_theme()
    datasets = list(dict.fromkeys(test["dataset"]))
    modes = sorted(set(test["bn_mode"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.4 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        refs = references[references["dataset"] == dataset] if has_refs else None
        _test_loss_panel(ax, test[test["dataset"] == dataset], refs, modes, methods)
        ax.set_title(dataset_label(dataset))
    title = (
        f"Held-out test loss: mean and {confidence:.0%} t-interval over seeds; "
        "grey lines = reference losses"
    )
    return finish(fig, path, title, axes[0])


def _test_loss_panel(
    ax: plt.Axes,
    rows: pd.DataFrame,
    refs: pd.DataFrame | None,
    modes: Sequence[str],
    methods: Sequence[str],
) -> None:
    """One dataset: a point and error bar per method × nz × BN mode, the modes dodged apart;
    the references of the dataset (those of another nz left out) as grey lines."""
    cats = _category_labels(rows, methods)
    colours, markers = _palette(modes), dict(zip(modes, ("o", "s", "D", "^"), strict=False))
    width = 0.5 / max(len(modes), 1)
    for j, mode in enumerate(modes):
        for i, (method, nz, _) in enumerate(cats):
            sel = rows[(rows["method"] == method) & (rows["nz"] == nz) & (rows["bn_mode"] == mode)]
            if sel.empty:
                continue
            r = sel.iloc[0]
            has_ci = math.isfinite(r["ci_low"]) and math.isfinite(r["ci_high"])
            ax.errorbar(
                i + (j - (len(modes) - 1) / 2) * width,
                r["mean"],
                yerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]] if has_ci else None,
                fmt=markers[mode],
                color=colours[mode],
                capsize=4,
                markersize=6,
                label=f"{bn_label(mode)} (n = {int(r['n'])})",
                zorder=3,
            )
    values = pd.concat([rows["mean"], rows["ci_high"], rows["ci_low"]])
    if refs is not None:
        drawn = refs[refs["nz"].isna() | refs["nz"].isin(set(rows["nz"].astype(int)))]
        for style, (_, ref) in zip(_REFERENCE_STYLES * 4, drawn.iterrows(), strict=False):
            ax.axhline(
                float(ref["sse_per_image"]),
                color="0.35",
                linestyle=style,
                linewidth=1.1,
                label=str(ref["name"]),
                zorder=1,
            )
        values = pd.concat([values, refs["sse_per_image"]])
    log_if_spread(ax, values)
    ax.set_xticks(range(len(cats)), [c[2] for c in cats])
    ax.set_xlim(-0.6, len(cats) - 0.4)
    ax.set(xlabel="method", ylabel=SSE_TEST_LABEL)


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
