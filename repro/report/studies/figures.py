"""Figures of the ablation studies: activation, multi-step GON, latent size.

Inputs are long-format frames built by the section modules (:mod:`repro.report.sections.studies` lists
them); drawing helpers and theme: :mod:`repro.report.figures.common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FixedLocator, NullFormatter

from repro.report.figures.common import (
    MSE_LABEL,
    SSE_TEST_LABEL,
    _palette,
    _seed_count_text,
    drop_legends,
    finish,
    log_if_spread,
    mean_lines,
    mean_points,
    set_theme,
)
from repro.report.labels import bn_label, dataset_label, method_label


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
    mode, GON and the AE dodged side by side at each activation, the reference's tick in bold.
    """
    set_theme()
    n = len(modes) + int(not curves.empty)
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 4.0), squeeze=False)
    axes = list(axes[0])
    if not curves.empty:
        _activation_curves(axes.pop(0), curves, reference, activations, confidence)
    labels = [method_label(m) for m in methods]
    data = points.assign(method=points["method"].map(method_label))
    for ax, mode in zip(axes, modes, strict=True):
        sel = data[data["bn_mode"] == mode]
        if sel.empty:
            ax.set_visible(False)
            continue
        mean_points(
            ax,
            sel,
            confidence,
            x="activation",
            y="loss",
            hue="method",
            order=[a for a in activations if a in set(sel["activation"])],
            hue_order=labels,
            dodge=0.35,
        )
        log_if_spread(ax, sel["loss"])
        ax.set(title=f"held-out test loss, {bn_label(mode)}", xlabel="activation")
        ax.set_ylabel(SSE_TEST_LABEL)
        ax.tick_params(axis="x", rotation=30)
        for tick in ax.get_xticklabels():
            if tick.get_text() == reference:
                tick.set_fontweight("bold")
    drop_legends(axes)
    title = (
        f"Activation study: mean and {confidence:.0%} t-interval over seeds "
        f"(reference: {reference}, in bold)"
    )
    return finish(fig, path, title, axes)


def _activation_curves(
    ax: plt.Axes,
    curves: pd.DataFrame,
    reference: str,
    activations: Sequence[str],
    confidence: float,
) -> None:
    """GON's mean held-out learning curve per activation; the reference thicker, with its band."""
    name = {a: f"{a} (reference)" if a == reference else a for a in activations}
    data = curves.assign(activation=curves["activation"].map(lambda a: name.get(a, a)))
    present = [name[a] for a in activations if name[a] in set(data["activation"])]
    colours = {name[a]: c for a, c in _palette(activations).items()}
    # Mean lines for every activation; the interval band only for the reference: seven
    # overlapping bands hide the lines they belong to.
    xy = {"x": "step", "y": "test_mse_per_pixel"}
    mean_lines(
        ax,
        data,
        None,
        hue="activation",
        hue_order=present,
        palette=colours,
        **xy,
        marker="o",
        markersize=3,
    )
    ref = data[data["activation"] == name.get(reference)]
    if not ref.empty:
        colour = colours[name[reference]]
        mean_lines(ax, ref, confidence, color=colour, linewidth=2.6, legend=False, **xy)
    for line in ax.get_lines():
        if line.get_label() == name.get(reference):
            line.set_linewidth(2.6)
    log_if_spread(ax, curves["test_mse_per_pixel"])
    ax.set(xlabel="optimiser step", ylabel=f"GON held-out test {MSE_LABEL}")
    n_seeds = curves.groupby("activation")["seed"].nunique()
    ax.set_title(
        f"GON held-out learning curves, mean ({_seed_count_text(n_seeds)});\n"
        f"band: {confidence:.0%} t-interval of the reference"
    )
    ax.legend(title="activation", fontsize=7, title_fontsize=7)


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
        hue_order=list(what.values()),
        dodge=0.3,
    )
    log_if_spread(ax_loss, long["loss"])
    ax_loss.set(ylabel="GON loss (SSE per image)", title="loss against k")
    for ax, col, label, title in (
        (ax_time, "seconds_per_epoch", "seconds per epoch (s)", "training time per epoch"),
        (ax_mem, "graph_mb", "autograd graph per step (MiB)", "memory saved for backward"),
    ):
        sel = points.dropna(subset=[col])
        if sel.empty:
            ax.set_visible(False)
            continue
        mean_points(ax, sel, confidence, x="k", y=col, order=order, color="0.25")
        ax.set(ylabel=label, title=title)
        ax.set_ylim(bottom=0)
    for ax in axes[0]:
        ax.set_xlabel("k (gradient steps from the origin)")
    drop_legends([ax_loss])
    n_seeds = points.groupby("k")["seed"].nunique()
    title = (
        f"Multi-step GON: mean and {confidence:.0%} t-interval over seeds "
        f"({_seed_count_text(n_seeds)})"
    )
    return finish(fig, path, title, [ax_loss])


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
        mean_lines(
            ax,
            sel,
            confidence,
            x="nz",
            y="loss",
            hue="method",
            hue_order=labels,
            palette="colorblind",
            err_style="bars",
            err_kws={"capsize": 4},
            markersize=7,
            **style,
        )
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(nzs))
        ax.set_xticklabels([str(v) for v in nzs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        log_if_spread(ax, sel["loss"])
        ax.set(title=dataset_label(dataset), xlabel="latent size nz (log scale)")
        ax.set_ylabel(f"{SSE_TEST_LABEL}\n{bn_label(bn)}")
    drop_legends(axes[0])
    n = points.groupby(["dataset", "nz", "method", "source"])["seed"].nunique()
    # One source: named in the title instead of a legend entry.
    where = f" ({sources[0]})" if len(sources) == 1 else ""
    title = (
        f"Latent size: held-out test loss against nz{where}\n"
        f"mean over seeds ({_seed_count_text(n)}); bars = {confidence:.0%} t-interval where n > 1"
    )
    # One row, without seaborn's "method" and "source" subtitles.
    return finish(fig, path, title, axes[0][:1], ncol=None, skip=("method", "source"))
