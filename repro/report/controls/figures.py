"""Figures of the main-run controls: the linear-encoder control, the learning curves against the
convergence threshold, and GON minus each autoencoder along training.

Drawing helpers and theme: :mod:`repro.report.figures.common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

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


@dataclass(frozen=True)
class ConvergencePanel:
    """One dataset × nz of the convergence figures: the main runs' held-out curves (step,
    test_mse_per_pixel, method, seed), GON − each rival along training in % of the rival's loss
    (:func:`repro.report.controls.convergence.paired_curve_difference`, ``relative=True``) and
    the threshold (MSE per pixel, or None)."""

    dataset: str
    nz: int
    curves: pd.DataFrame
    diff: pd.DataFrame
    threshold: float | None


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
            hue_order=[bn_label(m) for m in modes],
            dodge=0.3,
        )
        log_if_spread(ax, sel["loss"])
        ax.set(title=f"{dataset_label(dataset)}, nz = {nz}", xlabel="model", ylabel=SSE_TEST_LABEL)
    drop_legends(axes[0])
    n = points.groupby(["dataset", "nz", "method"])["seed"].nunique()
    title = (
        f"Linear-encoder control: mean and {confidence:.0%} t-interval over seeds "
        f"({_seed_count_text(n)})"
    )
    return finish(fig, path, title, axes[0])


def plot_convergence_curves(
    panels: Sequence[ConvergencePanel],
    path: str | Path,
    *,
    factor: float,
    methods: Sequence[str],
    confidence: float = 0.95,
) -> Path:
    """Main-run held-out learning curves per method against optimiser steps, with the threshold.

    ``panels``: one per dataset × nz, its ``curves`` (step, test_mse_per_pixel, method, seed)
    and ``threshold`` (MSE per pixel, or None).
    """
    fig, axes = _panel_grid(panels)
    all_methods = {m for p in panels for m in p.curves["method"]}
    # Colours over the params' method list, so a method keeps its colour when another is absent.
    every = [method_label(m) for m in [*methods, *sorted(all_methods - set(methods))]]
    palette = _palette(every)
    order = [m for m in every if m in {method_label(x) for x in all_methods}]
    for ax, panel in zip(axes, panels, strict=True):
        c = panel.curves.assign(method=panel.curves["method"].map(method_label))
        mean_lines(
            ax,
            c,
            confidence,
            x="step",
            y="test_mse_per_pixel",
            hue="method",
            hue_order=[m for m in order if m in set(c["method"])],
            palette=palette,
        )
        if panel.threshold is not None:
            ax.axhline(
                panel.threshold,
                color="0.3",
                linestyle="--",
                linewidth=1.1,
                label=f"threshold: {factor:g} × AE's final test loss",
            )
        values = pd.concat([c["test_mse_per_pixel"], pd.Series([panel.threshold or np.nan])])
        log_if_spread(ax, values)
        ax.set(xlabel="optimiser step", ylabel=f"held-out test {MSE_LABEL}")
    drop_legends(axes)
    n = pd.concat([p.curves for p in panels]).groupby("method")["seed"].nunique()
    title = (
        "Main runs: held-out test loss during training\n"
        f"line = mean, band = {confidence:.0%} t-interval over seeds ({_seed_count_text(n)})"
    )
    return finish(fig, path, title, axes)


def plot_paired_difference(
    panels: Sequence[ConvergencePanel], path: str | Path, *, confidence: float = 0.95
) -> Path:
    """GON − rival held-out test loss along training, paired over seeds, one panel per dataset.

    ``panels``: one per dataset × nz, its ``diff`` (rival, step, mean, low, high, n: the paired
    difference at each learning-curve point in % of the rival's loss,
    :func:`repro.report.controls.convergence.paired_curve_difference` with ``relative=True``).
    Below the dashed zero line GON is ahead; the band is the paired t-interval.
    """
    fig, axes = _panel_grid(panels)
    rivals = sorted({r for p in panels for r in p.diff["rival"]})
    palette = dict(zip(rivals, sns.color_palette("colorblind", len(rivals) + 2)[1:], strict=False))
    for ax, panel in zip(axes, panels, strict=True):
        d = panel.diff[panel.diff["step"] > 0]  # log axis: the shared start is not drawn
        for rival, g in d.groupby("rival", sort=True):
            g = g.sort_values("step")
            label = f"GON − {method_label(rival)}"
            ax.plot(
                g["step"], g["mean"], marker="o", markersize=3, color=palette[rival], label=label
            )
            ax.fill_between(g["step"], g["low"], g["high"], color=palette[rival], alpha=0.25)
        ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1.0)
        ax.set_xscale("log")
        ax.set(xlabel="optimiser step (log scale)", ylabel="GON − AE, % of the AE's test loss")
    n = int(max((p.diff["n"].max() for p in panels if not p.diff.empty), default=0))
    title = (
        "GON minus each autoencoder: held-out test loss along training, in % of the autoencoder's"
        " (below 0: GON ahead)\n"
        f"line = mean paired difference, band = {confidence:.0%} paired t-interval over {n} seeds"
    )
    return finish(fig, path, title, axes)


def _panel_grid(panels: Sequence[ConvergencePanel]) -> tuple[Figure, list[plt.Axes]]:
    """Theme applied; one panel per dataset × nz, titled, up to three a row, spare axes hidden."""
    set_theme()
    ncol = min(len(panels), 3)
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.8 * ncol, 7.0), 3.9 * nrow), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(flat, panels, strict=False):
        ax.set_title(f"{dataset_label(panel.dataset)}, nz = {panel.nz}")
    return fig, flat[: len(panels)]
