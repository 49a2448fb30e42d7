"""Figures of the report: training curves, held-out test losses and the GFE studies.

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

# smallnorb has no loader here; claims name it, so the report still spells it properly.
DATASET_LABELS = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "smallnorb": "SmallNORB",
}
METHOD_LABELS = {
    "gon": "GON",
    "ae": "AE",
    "ae_linear": "AE (linear encoder)",
    "gfe_adaptive": "GFE (adaptive step)",
    "gfe": "GFE (1st-order flow)",
    "gfe2": "GFE (2nd-order flow)",
}
FLOW_LABELS = {
    "first_order": "1st-order flow",
    "second_order": "2nd-order flow",
    "adaptive_step": "adaptive step",
}
FLOWS = tuple(FLOW_LABELS)
# The study loss of the GFE experiments (params.efficiency.loss), as a unit.
LOSS_LABELS = {"bce": "BCE, mean over pixels", "sse": "SSE per image"}
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


def flow_label(name: str) -> str:
    """Human name of a latent solver of the convergence study."""
    return FLOW_LABELS.get(name, name)


def loss_label(name: str) -> str:
    """Unit of a GFE study loss (``bce`` → ``BCE, mean over pixels``)."""
    return LOSS_LABELS.get(name, name)


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
    """'n = 3 seeds', 'n = 1 seed', or 'n = 1–3 seeds' when configurations differ."""
    lo, hi = int(counts.min()), int(counts.max())
    if lo == hi:
        return f"n = {lo} seed" + ("" if lo == 1 else "s")
    return f"n = {lo}–{hi} seeds"


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


# --------------------------------------------------------------------------------------------
# Gradient Flow Encoding studies (protocol §4): data efficiency and convergence per iteration
# --------------------------------------------------------------------------------------------

EFFICIENCY_FINAL_COLUMNS = ("train_size", "method", "seed", "final_loss", "final_sse")
EFFICIENCY_CURVE_COLUMNS = (
    "train_size",
    "method",
    "seed",
    "step",
    "images_seen",
    "train_seconds",
    "test_loss",
)
CONVERGENCE_COLUMNS = ("flow", "iteration", "nfe", "seconds", "image", "loss")


def _palette(names: Sequence[str]) -> dict[str, Any]:
    """One colour per name, in the given order (stable across the figures of a study)."""
    return dict(zip(names, sns.color_palette("colorblind", max(len(names), 1)), strict=False))


def _mean_bands(
    frame: pd.DataFrame,
    keys: Sequence[str],
    value: str,
    confidence: float,
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean and Student-t interval of ``value`` per group (the tables' interval, not a bootstrap).

    ``extra`` columns are averaged per group (for x values that differ between seeds, such as
    training seconds). ``low``/``high`` are NaN for a group of one.
    """
    rows = []
    for key, group in frame.groupby(list(keys), sort=True):
        ci = mean_ci(group[value].to_numpy(dtype=float), confidence)
        row = dict(zip(keys, key, strict=True))
        row.update(mean=ci.mean, low=ci.low, high=ci.high, n=ci.n)
        row.update({col: float(group[col].mean()) for col in extra})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "n", *extra])


def _band(ax: plt.Axes, x: Any, rows: pd.DataFrame, color: Any, label: str, **kws: Any) -> None:
    """Mean line with a shaded interval (skipped where the interval is undefined)."""
    ax.plot(x, rows["mean"], color=color, label=label, **kws)
    ok = rows["low"].notna().to_numpy()
    if ok.any():
        ax.fill_between(
            np.asarray(x)[ok],
            rows["low"].to_numpy()[ok],
            rows["high"].to_numpy()[ok],
            color=color,
            alpha=0.2,
            linewidth=0,
        )


def _plain_log_x(ax: plt.Axes, ticks: Sequence[float] | None = None) -> None:
    """Log x axis with plain-number labels (optionally only at ``ticks``)."""
    ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(list(ticks), [f"{int(t):,}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def _legend_below(fig: Figure, axes: Iterable[plt.Axes], ncol: int = 3) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), ncol),
        frameon=False,
    )


def plot_efficiency_final(
    finals: pd.DataFrame,
    path: str | Path,
    *,
    loss: str,
    methods: Sequence[str] = (),
    confidence: float = 0.95,
) -> Path:
    """Final held-out test loss against the number of training images, one line per method.

    ``finals`` has one row per run (train_size, method, seed, final_loss, final_sse). Mean and
    t-interval error bars over seeds; the x axis (training images available) is logarithmic and
    the methods are offset slightly along it so their error bars do not hide each other. A
    second panel repeats the figure in SSE per image unless the study loss already is SSE.
    """
    _require_columns(finals, EFFICIENCY_FINAL_COLUMNS, "plot_efficiency_final")
    set_theme()
    order = _order(finals["method"], methods)
    colours = _palette(order)
    sizes = sorted(int(v) for v in finals["train_size"].unique())
    panels = [("final_loss", loss_label(loss))]
    if loss != "sse":
        panels.append(("final_sse", "SSE per image"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (col, unit) in zip(axes[0], panels, strict=True):
        for i, method in enumerate(order):
            rows = _mean_bands(
                finals[finals["method"] == method], ["train_size"], col, confidence
            ).sort_values("train_size")
            dodge = 10 ** ((i - (len(order) - 1) / 2) * 0.025)
            x = rows["train_size"].to_numpy(dtype=float) * dodge
            mean = rows["mean"].to_numpy(dtype=float)
            ax.plot(
                x,
                mean,
                "-o",
                color=colours[method],
                markersize=5,
                label=f"{method_label(method)} ({_seed_count_text(rows['n'])})",
            )
            ok = rows["low"].notna().to_numpy()  # one seed: a point, no (zero-width) error bar
            if ok.any():
                yerr = np.vstack(
                    [mean[ok] - rows["low"].to_numpy()[ok], rows["high"].to_numpy()[ok] - mean[ok]]
                )
                ax.errorbar(
                    x[ok], mean[ok], yerr=yerr, fmt="none", color=colours[method], capsize=4
                )
        _plain_log_x(ax, sizes)
        values = finals[col]
        if _wants_log_scale(values, span=10.0):
            _readable_log_axis(ax)
        ax.set_xlabel("training images available (log scale)")
        ax.set_ylabel(f"final held-out test loss ({unit})")
    fig.suptitle(
        f"Data efficiency: final held-out test loss, mean and {confidence:.0%} t-interval "
        "over seeds"
    )
    fig.tight_layout()
    _legend_below(fig, axes[0])
    return _save(fig, path)


def plot_efficiency_curves(
    curves: pd.DataFrame,
    path: str | Path,
    *,
    loss: str,
    methods: Sequence[str] = (),
    confidence: float = 0.95,
) -> Path:
    """Held-out test loss during training, per training image seen and per training second.

    ``curves`` is long format, one row per run × evaluation point (train_size, method, seed,
    step, images_seen, train_seconds, test_loss). One column per train size. Top row: against
    training images seen (the same for every seed at a step). Bottom row: against cumulative
    training seconds, where the x value of a point is the mean over seeds at that step (seeds
    differ in time); the y band is the same t-interval over seeds in both rows. When the
    seconds span more than a decade the time axis is logarithmic and step 0 (0 s) is left out.
    """
    _require_columns(curves, EFFICIENCY_CURVE_COLUMNS, "plot_efficiency_curves")
    set_theme()
    order = _order(curves["method"], methods)
    colours = _palette(order)
    sizes = sorted(int(v) for v in curves["train_size"].unique())
    bands = _mean_bands(
        curves,
        ["train_size", "method", "step"],
        "test_loss",
        confidence,
        extra=("images_seen", "train_seconds"),
    )
    log_time = _wants_log_scale(bands["train_seconds"], span=10.0)
    log_y = _wants_log_scale(bands["mean"], span=10.0)
    fig, axes = plt.subplots(
        2, len(sizes), figsize=(4.2 * len(sizes), 6.6), squeeze=False, sharey=True
    )
    for j, size in enumerate(sizes):
        top, bottom = axes[0][j], axes[1][j]
        for method in order:
            rows = bands[(bands["train_size"] == size) & (bands["method"] == method)]
            if rows.empty:
                continue
            rows = rows.sort_values("step")
            label = f"{method_label(method)} ({_seed_count_text(rows['n'])})"
            style = {"marker": "o", "markersize": 4}
            _band(top, rows["images_seen"], rows, colours[method], label, **style)
            timed = rows[rows["train_seconds"] > 0] if log_time else rows
            _band(bottom, timed["train_seconds"], timed, colours[method], label, **style)
        top.set_title(f"{size:,} training images: per training image seen")
        bottom.set_title(f"{size:,} training images: per second of training")
        top.set_xlabel("training images seen (images)")
        bottom.set_xlabel(
            "cumulative training time (s, mean over seeds" + (", log scale)" if log_time else ")")
        )
        if log_time:
            _plain_log_x(bottom)
        for ax in (top, bottom):
            if log_y:
                _readable_log_axis(ax)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"held-out test loss ({loss_label(loss)})")
    n_seeds = curves.groupby(["train_size", "method"])["seed"].nunique()
    note = "; step 0 (0 s) not shown on the log time axis" if log_time else ""
    fig.suptitle(
        "Held-out test loss during training, per training image seen and per second\n"
        f"line = mean, band = {confidence:.0%} t-interval over seeds "
        f"({_seed_count_text(n_seeds)}){note}"
    )
    fig.tight_layout()
    _legend_below(fig, axes.flat)
    return _save(fig, path)


def plot_convergence(
    curves: pd.DataFrame,
    path: str | Path,
    *,
    loss: str,
    confidence: float = 0.95,
) -> Path:
    """Mean latent loss ℓ(z) over test images per solver iteration, gradient evaluation and second.

    ``curves`` has one row per flow × iteration × image (flow, iteration, nfe, seconds, image,
    loss) for one trained decoder. The band is a t-interval over the images (there are no seeds
    here). Three panels share the y axis: against iterations, cumulative gradient evaluations
    and wall time since the solve began (log x, without the 0 s point, when it spans decades).
    """
    _require_columns(curves, CONVERGENCE_COLUMNS, "plot_convergence")
    set_theme()
    flows = _order(curves["flow"], FLOWS)
    colours = _palette(flows)
    bands = _mean_bands(curves, ["flow", "iteration"], "loss", confidence, extra=("nfe", "seconds"))
    log_time = _wants_log_scale(bands["seconds"], span=10.0)
    panels = (
        ("iteration", "solver iteration (accepted steps for the adaptive step)"),
        ("nfe", "gradient evaluations of ℓ w.r.t. z (cumulative)"),
        (
            "seconds",
            "wall-clock time since the solve began (s" + (", log scale)" if log_time else ")"),
        ),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), squeeze=False, sharey=True)
    for ax, (x, xlabel) in zip(axes[0], panels, strict=True):
        for flow in flows:
            rows = bands[bands["flow"] == flow].sort_values("iteration")
            if x == "seconds" and log_time:
                rows = rows[rows["seconds"] > 0]
            _band(ax, rows[x], rows, colours[flow], flow_label(flow), linewidth=1.5)
        ax.set_xlabel(xlabel)
        if x == "seconds" and log_time:
            _plain_log_x(ax)
    if _wants_log_scale(bands["mean"], span=10.0):
        _readable_log_axis(axes[0][0])
    axes[0][0].set_ylabel(f"mean latent loss ℓ(z) ({loss_label(loss)})")
    n_images = int(curves["image"].nunique())
    fig.suptitle(
        f"Convergence of the latent solvers for one trained decoder: mean over {n_images} test "
        f"images, band = {confidence:.0%} t-interval over images"
    )
    fig.tight_layout()
    _legend_below(fig, axes[0])
    return _save(fig, path)
