"""Figures of the main-run controls (seaborn, the report's theme): the linear-encoder control,
the learning curves against the convergence threshold, and GON minus each autoencoder along
training.

Intervals and axes follow :mod:`repro.report.study_figures`: the Student-t interval of the
tables, never seaborn's bootstrap, and every axis names its unit.
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

from repro.report.figures import (  # noqa: E402
    MSE_LABEL,
    SSE_TEST_LABEL,
    _legend_below,
    _save,
    _seed_count_text,
    _t_interval,
    bn_label,
    dataset_label,
    method_label,
    set_theme,
)
from repro.report.study_figures import drop_legends, log_if_spread, mean_points  # noqa: E402


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
        mean_points(
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
        log_if_spread(ax, sel["loss"])
        ax.set_title(f"{dataset_label(dataset)}, nz = {nz}")
        ax.set_xlabel("model")
        ax.set_ylabel(SSE_TEST_LABEL)
    drop_legends(axes[0])
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
        log_if_spread(ax, values)
        ax.set_title(f"{dataset_label(panel['dataset'])}, nz = {panel['nz']}")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"held-out test {MSE_LABEL}")
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    drop_legends(flat)
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
    :func:`repro.report.controls_convergence.paired_curve_difference` with ``relative=True``).
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
