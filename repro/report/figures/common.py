"""The report's figure toolkit: one theme, the inputs' column schemas and the shared drawing helpers.

One seaborn theme for every figure, so the report reads as one document; every axis names its
unit, because the study's two loss reductions (MSE per pixel, SSE per image) differ by the
number of pixels and are easy to confuse. Every interval drawn is the Student-t interval of the
tables (:func:`_t_interval`), not seaborn's bootstrap; with one seed a point is drawn without
an interval. Figures are written with :func:`repro.io.atomic_write` so an interrupted report run
never leaves a truncated PNG behind. The figures themselves: :mod:`repro.report.figures.runs` (main
runs), :mod:`repro.report.figures.gfe` (GFE studies), :mod:`repro.report.studies.figures` (ablations)
and :mod:`repro.report.controls.figures` (controls of the main runs).
"""

from __future__ import annotations

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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from repro.io import atomic_write  # noqa: E402
from repro.stats import mean_ci  # noqa: E402

DPI = 150
MSE_LABEL = "reconstruction loss (MSE per pixel)"
SSE_TEST_LABEL = "held-out test loss (SSE per image)"

# Long-format inputs of the figures, built by the section modules.
HISTORY_COLUMNS = ("dataset", "method", "nz", "seed", "epoch", "split", "mse_per_pixel")
SUMMARY_COLUMNS = ("dataset", "method", "nz", "bn_mode", "split", "mean", "ci_low", "ci_high", "n")
REFERENCE_COLUMNS = ("dataset", "name", "nz", "sse_per_image")
_EFFICIENCY_RUN = ("train_size", "method", "seed")
EFFICIENCY_FINAL_COLUMNS = (*_EFFICIENCY_RUN, "final_loss", "final_sse")
EFFICIENCY_CURVE_COLUMNS = (*_EFFICIENCY_RUN, "step", "images_seen", "train_seconds", "test_loss")
CONVERGENCE_COLUMNS = ("flow", "iteration", "nfe", "seconds", "image", "loss")


def set_theme() -> None:
    """Apply the study's single figure theme (called by every plotting function)."""
    sns.set_theme(style="whitegrid", context="paper")


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail with the missing column names instead of a KeyError deep inside seaborn."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{what}: no rows to plot")


def start_figure(
    frame: pd.DataFrame, columns: Sequence[str], what: str, key: str, preferred: Sequence[str]
) -> tuple[list[str], dict[str, Any]]:
    """Check the input and apply the theme; the ``key`` values in a stable order, with colours."""
    _require_columns(frame, columns, what)
    set_theme()
    order = _order(frame[key], preferred)
    return order, _palette(order)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and free it (figures hold a lot of memory)."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def finish(
    fig: Figure,
    path: str | Path,
    title: str,
    legend_axes: Iterable[plt.Axes],
    *,
    ncol: int | None = 3,
    skip: Sequence[str] = (),
) -> Path:
    """Title, tight layout and one legend under the panels, then :func:`_save`.

    The legend holds the entries of ``legend_axes`` once per label, less ``skip``, in rows of
    ``ncol`` (``None``: one row); per-panel legends covered points at the top of the range.
    """
    fig.suptitle(title)
    fig.tight_layout()
    handles: dict[str, Any] = {}
    for ax in legend_axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in skip:
                handles.setdefault(label, handle)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=max(len(handles), 1) if ncol is None else min(len(handles), ncol),
        frameon=False,
    )
    return _save(fig, path)


def drop_legends(axes: Iterable[plt.Axes]) -> None:
    """Remove the axes' own legends (the figure's shared legend replaces them)."""
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()


def _wants_log_scale(values: pd.Series | np.ndarray, span: float = 20.0) -> bool:
    """Log scale when positive values span more than ``span``×, so early epochs do not flatten the rest."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    return arr.size > 1 and float(arr.max() / arr.min()) > span


def log_if_spread(ax: plt.Axes, values: pd.Series | np.ndarray, span: float = 10.0) -> None:
    """A log y axis labelled at 1-2-5 steps in plain numbers when the values span more than
    ``span``×: decades alone leave most panels with one or two labels, and 1e-2 notation is
    harder to read against the tables."""
    if _wants_log_scale(values, span=span):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def _plain_log_x(ax: plt.Axes, ticks: Sequence[float] | None = None) -> None:
    """Log x axis with plain-number labels (optionally only at ``ticks``)."""
    ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(list(ticks), [f"{int(t):,}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def _t_interval(confidence: float) -> Callable[[pd.Series], tuple[float, float]]:
    """Seaborn ``errorbar`` callable giving the same Student-t interval as the tables.

    Seaborn's own "ci" is a bootstrap, which with three seeds is far too narrow and would make
    the bands disagree with the numbers printed next to them.
    """

    def interval(values: pd.Series) -> tuple[float, float]:
        ci = mean_ci(np.asarray(values, dtype=float), confidence)
        return ci.low, ci.high

    return interval


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Unique values, those in ``preferred`` first in its order (stable colours and legends)."""
    seen = set(values)
    return [v for v in preferred if v in seen] + sorted(seen - set(preferred))


def _palette(names: Sequence[str]) -> dict[str, Any]:
    """One colour per name, in the given order (stable across the figures of a study)."""
    return dict(zip(names, sns.color_palette("colorblind", max(len(names), 1)), strict=False))


def _seed_count_text(counts: pd.Series) -> str:
    """'n = 3 seeds', 'n = 1 seed', or 'n = 1–3 seeds' when configurations differ."""
    lo, hi = int(counts.min()), int(counts.max())
    if lo == hi:
        return f"n = {lo} seed" + ("" if lo == 1 else "s")
    return f"n = {lo}–{hi} seeds"


def mean_lines(ax: plt.Axes, data: pd.DataFrame, confidence: float | None, **kws: Any) -> None:
    """Seaborn mean line per group, with the t-interval band (none when ``confidence`` is None)."""
    errorbar = None if confidence is None else _t_interval(confidence)
    sns.lineplot(data=data, ax=ax, estimator="mean", errorbar=errorbar, **kws)


def mean_points(
    ax: plt.Axes,
    data: pd.DataFrame,
    confidence: float,
    *,
    hue: str | None = None,
    hue_order: Sequence[str] = (),
    **kws: Any,
) -> None:
    """Mean and t-interval per category, no connecting line; the hues present in ``data``
    (in ``hue_order``) dodged apart, each with its own marker and colour-blind safe colour."""
    if hue is not None:
        present = set(data[hue])
        kws.update(
            hue=hue,
            hue_order=[h for h in hue_order if h in present],
            markers=["o", "s", "D"][: len(present)],
            palette="colorblind",
        )
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
        x, low, high = np.asarray(x)[ok], rows["low"].to_numpy()[ok], rows["high"].to_numpy()[ok]
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
