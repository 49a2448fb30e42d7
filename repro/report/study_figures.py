"""Figures of the ablation studies and the main-run controls (seaborn, the report's theme).

Every interval drawn is the Student-t interval of the tables (:func:`figures._t_interval`), not
seaborn's bootstrap; with one seed a point is drawn without an interval. Every axis names its
unit. Inputs are long-format frames built by :mod:`repro.report.studies`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report stage runs on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


def _drop_legends(axes: Sequence[plt.Axes]) -> None:
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()


def _points(ax: plt.Axes, data: pd.DataFrame, confidence: float, **kws: Any) -> None:
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


def _log_if_spread(ax: plt.Axes, values: pd.Series, span: float = 10.0) -> None:
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
        ax = axes.pop(0)
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
        _log_if_spread(ax, curves["test_mse_per_pixel"])
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"GON held-out test {MSE_LABEL}")
        n_seeds = curves.groupby("activation")["seed"].nunique()
        ax.set_title(
            f"GON held-out learning curves, mean ({_seed_count_text(n_seeds)});\n"
            f"band: {confidence:.0%} t-interval of the reference"
        )
        ax.legend(title="activation", fontsize=7, title_fontsize=7)
    labels = [method_label(m) for m in methods]
    data = points.assign(method=points["method"].map(method_label))
    for ax, mode in zip(axes, modes, strict=True):
        sel = data[data["bn_mode"] == mode]
        if sel.empty:
            ax.set_visible(False)
            continue
        _points(
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
        _log_if_spread(ax, sel["loss"])
        ax.set_title(f"held-out test loss, {bn_label(mode)}")
        ax.set_xlabel("activation")
        ax.set_ylabel(SSE_TEST_LABEL)
        ax.tick_params(axis="x", rotation=30)
        for tick in ax.get_xticklabels():
            if tick.get_text() == reference:
                tick.set_fontweight("bold")
    point_axes = axes
    _drop_legends(point_axes)
    fig.suptitle(
        f"Activation study: mean and {confidence:.0%} t-interval over seeds "
        f"(reference: {reference}, in bold)"
    )
    fig.tight_layout()
    _legend_below(fig, point_axes)
    return _save(fig, path)


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
    _points(
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
    _log_if_spread(ax_loss, long["loss"])
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
        _points(ax, sel, confidence, x="k", y=col, order=order, color="0.25")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    for ax in axes[0]:
        ax.set_xlabel("k (gradient steps from the origin)")
    _drop_legends([ax_loss])
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
        _log_if_spread(ax, sel["loss"])
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel("latent size nz (log scale)")
        ax.set_ylabel(f"{SSE_TEST_LABEL}\n{bn_label(bn)}")
    handles, names = axes[0][0].get_legend_handles_labels()
    _drop_legends(axes[0])
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


def plot_linear_control(
    points: pd.DataFrame,
    path: str | Path,
    *,
    methods: Sequence[str],
    modes: Sequence[str],
    confidence: float = 0.95,
) -> Path:
    """Test loss of GON, the linear-encoder AE and the conv AE, per dataset × nz and BN mode.

    ``points``: dataset, nz, method, seed, bn_mode, loss (test SSE per image).
    """
    set_theme()
    keys = list(dict.fromkeys(zip(points["dataset"], points["nz"], strict=True)))
    width = max(5.2 * len(keys), 7.0)  # room for the title with one panel
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 4.0), squeeze=False)
    data = points.assign(
        method=points["method"].map(method_label), bn=points["bn_mode"].map(bn_label)
    )
    order = [method_label(m) for m in methods if method_label(m) in set(data["method"])]
    for ax, (dataset, nz) in zip(axes[0], keys, strict=True):
        sel = data[(data["dataset"] == dataset) & (data["nz"] == nz)]
        _points(
            ax,
            sel,
            confidence,
            x="method",
            y="loss",
            hue="bn",
            order=[m for m in order if m in set(sel["method"])],
            hue_order=[bn_label(m) for m in modes if bn_label(m) in set(sel["bn"])],
            dodge=0.3,
            markers=["o", "s"][: sel["bn"].nunique()],
            palette="colorblind",
        )
        _log_if_spread(ax, sel["loss"])
        ax.set_title(f"{dataset_label(dataset)}, nz = {nz}")
        ax.set_xlabel("model")
        ax.set_ylabel(SSE_TEST_LABEL)
    _drop_legends(axes[0])
    n = points.groupby(["dataset", "nz", "method"])["seed"].nunique()
    fig.suptitle(
        f"Linear-encoder control: mean and {confidence:.0%} t-interval over seeds "
        f"({_seed_count_text(n)})"
    )
    fig.tight_layout()
    _legend_below(fig, axes[0])
    return _save(fig, path)


def plot_convergence_curves(
    panels: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    factor: float,
    methods: Sequence[str],
    confidence: float = 0.95,
) -> Path:
    """Main-run held-out learning curves per method against optimiser steps, with the threshold.

    ``panels``: one per dataset × nz, each with ``dataset``, ``nz``, ``curves`` (step,
    test_mse_per_pixel, method, seed) and ``threshold`` (MSE per pixel, or None).
    """
    set_theme()
    ncol = min(len(panels), 3)
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.8 * ncol, 7.0), 3.9 * nrow), squeeze=False)
    all_methods = {m for p in panels for m in p["curves"]["method"]}
    # Colours over the params' method list, so a method keeps its colour when another is absent.
    every = [method_label(m) for m in [*methods, *sorted(all_methods - set(methods))]]
    palette = dict(zip(every, sns.color_palette("colorblind", len(every)), strict=False))
    order = [m for m in every if m in {method_label(x) for x in all_methods}]
    flat = list(axes.flat)
    for ax, panel in zip(flat, panels, strict=False):
        c = panel["curves"].assign(method=panel["curves"]["method"].map(method_label))
        sns.lineplot(
            data=c,
            x="step",
            y="test_mse_per_pixel",
            hue="method",
            hue_order=[m for m in order if m in set(c["method"])],
            palette=palette,
            estimator="mean",
            errorbar=_t_interval(confidence),
            ax=ax,
        )
        if panel["threshold"] is not None:
            ax.axhline(
                panel["threshold"],
                color="0.3",
                linestyle="--",
                linewidth=1.1,
                label=f"threshold: {factor:g} × AE's final test loss",
            )
        values = pd.concat([c["test_mse_per_pixel"], pd.Series([panel["threshold"] or np.nan])])
        _log_if_spread(ax, values)
        ax.set_title(f"{dataset_label(panel['dataset'])}, nz = {panel['nz']}")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"held-out test {MSE_LABEL}")
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    _drop_legends(flat)
    n = pd.concat([p["curves"] for p in panels]).groupby("method")["seed"].nunique()
    fig.suptitle(
        "Main runs: held-out test loss during training\n"
        f"line = mean, band = {confidence:.0%} t-interval over seeds ({_seed_count_text(n)})"
    )
    fig.tight_layout()
    _legend_below(fig, flat[: len(panels)])
    return _save(fig, path)


def plot_paired_difference(
    panels: Sequence[Mapping[str, Any]], path: str | Path, *, confidence: float = 0.95
) -> Path:
    """GON − rival held-out test loss along training, paired over seeds, one panel per dataset.

    ``panels``: ``dataset``, ``nz`` and ``diff`` (rival, step, mean, low, high, n: the paired
    difference at each learning-curve point in % of the rival's loss,
    :func:`repro.report.studies.paired_curve_difference` with ``relative=True``).
    Below the dashed zero line GON is ahead; the band is the paired t-interval.
    """
    set_theme()
    ncol = min(len(panels), 3)
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.8 * ncol, 7.0), 3.9 * nrow), squeeze=False)
    rivals = sorted({r for p in panels for r in p["diff"]["rival"]})
    palette = dict(zip(rivals, sns.color_palette("colorblind", len(rivals) + 2)[1:], strict=False))
    flat = list(axes.flat)
    for ax, panel in zip(flat, panels, strict=False):
        d = panel["diff"][panel["diff"]["step"] > 0]  # log axis: the shared start is not drawn
        for rival, g in d.groupby("rival", sort=True):
            g = g.sort_values("step")
            label = f"GON − {method_label(rival)}"
            ax.plot(
                g["step"], g["mean"], marker="o", markersize=3, color=palette[rival], label=label
            )
            ax.fill_between(g["step"], g["low"], g["high"], color=palette[rival], alpha=0.25)
        ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1.0)
        ax.set_xscale("log")
        ax.set_title(f"{dataset_label(panel['dataset'])}, nz = {panel['nz']}")
        ax.set_xlabel("optimiser step (log scale)")
        ax.set_ylabel("GON − AE, % of the AE's test loss")
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    n = int(max((p["diff"]["n"].max() for p in panels if not p["diff"].empty), default=0))
    fig.suptitle(
        "GON minus each autoencoder: held-out test loss along training, in % of the autoencoder's"
        " (below 0: GON ahead)\n"
        f"line = mean paired difference, band = {confidence:.0%} paired t-interval over {n} seeds"
    )
    fig.tight_layout()
    _legend_below(fig, flat[: len(panels)])
    return _save(fig, path)
