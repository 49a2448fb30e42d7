"""Figures of the Gradient Flow Encoding studies (docs/protocol.md §4): data efficiency and the
convergence of the latent solvers per iteration, gradient evaluation and second.

Drawing helpers, theme and input schemas: :mod:`repro.report.figures.common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from repro.report.figures.common import (
    CONVERGENCE_COLUMNS,
    EFFICIENCY_CURVE_COLUMNS,
    EFFICIENCY_FINAL_COLUMNS,
    _band,
    _mean_bands,
    _plain_log_x,
    _seed_count_text,
    _wants_log_scale,
    finish,
    log_if_spread,
    start_figure,
)
from repro.report.labels import FLOWS, flow_label, loss_label, method_label


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
    order, colours = start_figure(
        finals, EFFICIENCY_FINAL_COLUMNS, "plot_efficiency_final", "method", methods
    )
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
            label = f"{method_label(method)} ({_seed_count_text(rows['n'])})"
            ax.plot(x, mean, "-o", color=colours[method], markersize=5, label=label)
            ok = rows["low"].notna().to_numpy()  # one seed: a point, no (zero-width) error bar
            if ok.any():
                low, high = rows["low"].to_numpy()[ok], rows["high"].to_numpy()[ok]
                yerr = np.vstack([mean[ok] - low, high - mean[ok]])
                ax.errorbar(
                    x[ok], mean[ok], yerr=yerr, fmt="none", color=colours[method], capsize=4
                )
        _plain_log_x(ax, sizes)
        log_if_spread(ax, finals[col])
        ax.set_xlabel("training images available (log scale)")
        ax.set_ylabel(f"final held-out test loss ({unit})")
    title = (
        f"Data efficiency: final held-out test loss, mean and {confidence:.0%} t-interval "
        "over seeds"
    )
    return finish(fig, path, title, axes[0])


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
    order, colours = start_figure(
        curves, EFFICIENCY_CURVE_COLUMNS, "plot_efficiency_curves", "method", methods
    )
    sizes = sorted(int(v) for v in curves["train_size"].unique())
    keys = ["train_size", "method", "step"]
    extra = ("images_seen", "train_seconds")
    bands = _mean_bands(curves, keys, "test_loss", confidence, extra=extra)
    log_time = _wants_log_scale(bands["train_seconds"], span=10.0)
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
            log_if_spread(ax, bands["mean"])
    for ax in axes[:, 0]:
        ax.set_ylabel(f"held-out test loss ({loss_label(loss)})")
    n_seeds = curves.groupby(["train_size", "method"])["seed"].nunique()
    note = "; step 0 (0 s) not shown on the log time axis" if log_time else ""
    title = (
        "Held-out test loss during training, per training image seen and per second\n"
        f"line = mean, band = {confidence:.0%} t-interval over seeds "
        f"({_seed_count_text(n_seeds)}){note}"
    )
    return finish(fig, path, title, axes.flat)


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
    flows, colours = start_figure(curves, CONVERGENCE_COLUMNS, "plot_convergence", "flow", FLOWS)
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
    log_if_spread(axes[0][0], bands["mean"])
    axes[0][0].set_ylabel(f"mean latent loss ℓ(z) ({loss_label(loss)})")
    title = (
        "Convergence of the latent solvers for one trained decoder: mean over "
        f"{int(curves['image'].nunique())} test images, band = {confidence:.0%} t-interval "
        "over images"
    )
    return finish(fig, path, title, axes[0])
