"""Figures of the ablation studies (seaborn, the report's theme): activation, multi-step GON,
latent size; and the drawing helpers the controls' figures (:mod:`repro.report.controls_figures`)
share.

Every interval drawn is the Student-t interval of the tables (:func:`figures._t_interval`), not
seaborn's bootstrap; with one seed a point is drawn without an interval. Every axis names its
unit. Inputs are long-format frames built by the section modules (:mod:`repro.report.studies`
lists them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report stage runs on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter  # noqa: E402

from repro.report.figures import (  # noqa: E402
    MSE_LABEL,
    SSE_TEST_LABEL,
    _legend_below,
    _readable_log_axis,
    _save,
    _seed_count_text,
    _t_interval,
    _wants_log_scale,
    bn_label,
    dataset_label,
    method_label,
    set_theme,
)


def drop_legends(axes: Sequence[plt.Axes]) -> None:
    """Remove the axes' own legends (the figure's shared legend replaces them)."""
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()


def mean_points(ax: plt.Axes, data: pd.DataFrame, confidence: float, **kws: Any) -> None:
    """Mean and t-interval per category, no connecting line, hues dodged apart."""
    sns.pointplot(
        data=data,
        ax=ax,
        estimator="mean",
        errorbar=_t_interval(confidence),
        linestyle="none",
        capsize=0.15,
        err_kws={"linewidth": 1.2},
        markersize=5,
        **kws,
    )


def log_if_spread(ax: plt.Axes, values: pd.Series, span: float = 10.0) -> None:
    """A readable log y-axis when the values span more than ``span``×."""
    if _wants_log_scale(values, span=span):
        _readable_log_axis(ax)


def plot_activation(
    curves: pd.DataFrame,
    points: pd.DataFrame,
    path: str | Path,
    *,
    reference: str,
    activations: Sequence[str],
    methods: Sequence[str],
    modes: Sequence[str],
    confidence: float = 0.95,
) -> Path:
    """Left: GON held-out learning curves per activation; right: test loss per activation and method.

    ``curves`` (may be empty): activation, seed, step, test_mse_per_pixel of the GON runs.
    ``points``: method, activation, seed, bn_mode, loss (test SSE per image); one panel per BN
    mode, GON and the AE side by side at each activation.
    """
    set_theme()
    has_curves = not curves.empty
    n = len(modes) + int(has_curves)
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 4.0), squeeze=False)
    axes = list(axes[0])
    palette = dict(
        zip(activations, sns.color_palette("colorblind", len(activations)), strict=False)
    )
    if has_curves:
        _activation_curves(
            axes.pop(0),
            curves,
            reference=reference,
            activations=activations,
            palette=palette,
            confidence=confidence,
        )
    labels = [method_label(m) for m in methods]
    data = points.assign(method=points["method"].map(method_label))
    for ax, mode in zip(axes, modes, strict=True):
        _activation_panel(
            ax, data[data["bn_mode"] == mode], mode, reference, activations, labels, confidence
        )
    drop_legends(axes)
    fig.suptitle(
        f"Activation study: mean and {confidence:.0%} t-interval over seeds "
        f"(reference: {reference}, in bold)"
    )
    fig.tight_layout()
    _legend_below(fig, axes)
    return _save(fig, path)


def _activation_curves(
    ax: plt.Axes,
    curves: pd.DataFrame,
    *,
    reference: str,
    activations: Sequence[str],
    palette: Mapping[str, Any],
    confidence: float,
) -> None:
    """GON's mean held-out learning curve per activation; the reference thicker, with its band."""
    name = {a: f"{a} (reference)" if a == reference else a for a in activations}
    data = curves.assign(activation=curves["activation"].map(lambda a: name.get(a, a)))
    present = [name[a] for a in activations if name[a] in set(data["activation"])]
    colours = {name[a]: c for a, c in palette.items()}
    # Mean lines for every activation; the interval band only for the reference: seven
    # overlapping bands hide the lines they belong to.
    sns.lineplot(
        data=data,
        x="step",
        y="test_mse_per_pixel",
        hue="activation",
        hue_order=present,
        palette=colours,
        estimator="mean",
        errorbar=None,
        marker="o",
        markersize=3,
        ax=ax,
    )
    ref = data[data["activation"] == name.get(reference)]
    if not ref.empty:
        sns.lineplot(
            data=ref,
            x="step",
            y="test_mse_per_pixel",
            color=colours[name[reference]],
            estimator="mean",
            errorbar=_t_interval(confidence),
            linewidth=2.6,
            legend=False,
            ax=ax,
        )
    for line in ax.get_lines():
        if line.get_label() == name.get(reference):
            line.set_linewidth(2.6)
    log_if_spread(ax, curves["test_mse_per_pixel"])
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"GON held-out test {MSE_LABEL}")
    n_seeds = curves.groupby("activation")["seed"].nunique()
    ax.set_title(
        f"GON held-out learning curves, mean ({_seed_count_text(n_seeds)});\n"
        f"band: {confidence:.0%} t-interval of the reference"
    )
    ax.legend(title="activation", fontsize=7, title_fontsize=7)


def _activation_panel(
    ax: plt.Axes,
    sel: pd.DataFrame,
    mode: str,
    reference: str,
    activations: Sequence[str],
    labels: Sequence[str],
    confidence: float,
) -> None:
    """One BN mode: test loss per activation, the methods dodged side by side."""
    if sel.empty:
        ax.set_visible(False)
        return
    mean_points(
        ax,
        sel,
        confidence,
        x="activation",
        y="loss",
        hue="method",
        order=[a for a in activations if a in set(sel["activation"])],
        hue_order=[m for m in labels if m in set(sel["method"])],
        dodge=0.35,
        markers=["o", "s", "D"][: sel["method"].nunique()],
        palette="colorblind",
    )
    log_if_spread(ax, sel["loss"])
    ax.set_title(f"held-out test loss, {bn_label(mode)}")
    ax.set_xlabel("activation")
    ax.set_ylabel(SSE_TEST_LABEL)
    ax.tick_params(axis="x", rotation=30)
    for tick in ax.get_xticklabels():
        if tick.get_text() == reference:
            tick.set_fontweight("bold")


def plot_multistep(
    points: pd.DataFrame, path: str | Path, *, modes: Sequence[str], confidence: float = 0.95
) -> Path:
    """Loss, seconds per epoch and autograd graph memory per step against k.

    ``points``: one row per run with k, seed, train_sse, test_<mode> for each mode,
    seconds_per_epoch, graph_mb.
    """
    set_theme()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), squeeze=False)
    ax_loss, ax_time, ax_mem = axes[0]
    what = {f"test_{m}": f"held-out test, {bn_label(m)}" for m in modes}
    what["train_sse"] = "training loss, last epoch"
    long = points.melt(
        id_vars=["k", "seed"], value_vars=list(what), var_name="what", value_name="loss"
    ).dropna(subset=["loss"])
    long["what"] = long["what"].map(what)
    order = sorted(points["k"].unique())
    mean_points(
        ax_loss,
        long,
        confidence,
        x="k",
        y="loss",
        hue="what",
        order=order,
        hue_order=[w for w in what.values() if w in set(long["what"])],
        dodge=0.3,
        markers=["o", "s", "D"][: long["what"].nunique()],
        palette="colorblind",
    )
    log_if_spread(ax_loss, long["loss"])
    ax_loss.set_ylabel("GON loss (SSE per image)")
    ax_loss.set_title("loss against k")
    for ax, col, label, title in (
        (ax_time, "seconds_per_epoch", "seconds per epoch (s)", "training time per epoch"),
        (ax_mem, "graph_mb", "autograd graph per step (MiB)", "memory saved for backward"),
    ):
        sel = points.dropna(subset=[col])
        if sel.empty:
            ax.set_visible(False)
            continue
        mean_points(ax, sel, confidence, x="k", y=col, order=order, color="0.25")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    for ax in axes[0]:
        ax.set_xlabel("k (gradient steps from the origin)")
    drop_legends([ax_loss])
    n_seeds = points.groupby("k")["seed"].nunique()
    fig.suptitle(
        f"Multi-step GON: mean and {confidence:.0%} t-interval over seeds "
        f"({_seed_count_text(n_seeds)})"
    )
    fig.tight_layout()
    _legend_below(fig, [ax_loss])
    return _save(fig, path)


def plot_latent(
    points: pd.DataFrame,
    path: str | Path,
    *,
    methods: Sequence[str],
    datasets: Sequence[str],
    bn: str,
    confidence: float = 0.95,
) -> Path:
    """Held-out test loss against nz per dataset; hue = method, line style = source of the runs.

    ``points``: dataset, nz, method, source, seed, loss (test SSE per image, BN mode ``bn``).
    """
    set_theme()
    datasets = [d for d in datasets if d in set(points["dataset"])]
    width = max(4.8 * len(datasets), 7.0)  # room for the title with one panel
    fig, axes = plt.subplots(1, len(datasets), figsize=(width, 3.9), squeeze=False)
    data = points.assign(method=points["method"].map(method_label))
    labels = [method_label(m) for m in methods if method_label(m) in set(data["method"])]
    sources = list(dict.fromkeys(data["source"]))
    nzs = sorted(int(v) for v in points["nz"].unique())
    # Several sources: line style and marker tell them apart; one source: plain dots.
    style = (
        {"style": "source", "style_order": sources, "markers": True}
        if len(sources) > 1
        else {"marker": "o"}
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sel = data[data["dataset"] == dataset]
        sns.lineplot(
            data=sel,
            x="nz",
            y="loss",
            hue="method",
            hue_order=labels,
            palette="colorblind",
            estimator="mean",
            errorbar=_t_interval(confidence),
            err_style="bars",
            err_kws={"capsize": 4},
            markersize=7,
            ax=ax,
            **style,
        )
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(nzs))
        ax.set_xticklabels([str(v) for v in nzs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        log_if_spread(ax, sel["loss"])
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel("latent size nz (log scale)")
        ax.set_ylabel(f"{SSE_TEST_LABEL}\n{bn_label(bn)}")
    handles, names = axes[0][0].get_legend_handles_labels()
    drop_legends(axes[0])
    n = points.groupby(["dataset", "nz", "method", "source"])["seed"].nunique()
    # One source: named in the title instead of a legend entry.
    where = f" ({sources[0]})" if len(sources) == 1 else ""
    fig.suptitle(
        f"Latent size: held-out test loss against nz{where}\n"
        f"mean over seeds ({_seed_count_text(n)}); bars = {confidence:.0%} t-interval where n > 1"
    )
    fig.tight_layout()
    entries = [(h, n) for h, n in zip(handles, names, strict=True) if n not in ("method", "source")]
    fig.legend(
        [h for h, _ in entries],
        [n for _, n in entries],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=max(len(entries), 1),
        frameon=False,
    )
    return _save(fig, path)
