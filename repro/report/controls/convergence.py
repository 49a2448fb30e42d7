"""Report subsection "Convergence speed" of the parameter-count and convergence section.

The GON paper's claim that GON converges faster than an autoencoder, read off the main runs'
held-out learning curves: steps and seconds until each run's curve reaches
``report.convergence_threshold`` × the AE's final held-out test loss, and the paired difference
GON − each autoencoder at every curve point (docs/protocol.md §5, "Equal data is not equal
compute": per step and per second).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.config import Params
from repro.report.controls import figures as controls_figures
from repro.report.controls.figures import ConvergencePanel
from repro.report.formatting import ordered
from repro.report.labels import dataset_label, method_label
from repro.report.studies.common import Scale, finite_ci, main_scale, rank
from repro.report.study_runs import CURVE_COLUMNS, read_curve
from repro.report.verdicts import (
    ABOVE,
    BELOW,
    HIGHER,
    LOWER,
    NOT_TESTED,
    SPANS,
    paired_verdict,
    side_of_zero,
    significance_level,
)
from repro.stats import (
    MeanCI,
    PairedDifference,
    paired_by_key,
    paired_difference,
    time_to_threshold,
)

RIVALS = ("ae", "ae_linear")  # GON's rivals along training: the conv AE, the linear-encoder AE
Reached = dict[int, tuple[float, float]]  # seed → (steps, seconds) to the threshold


@dataclass(frozen=True)
class AlongTraining:
    """GON − one rival along training (% of the rival's loss): the last curve point's paired
    difference and the side of zero its interval lies on, the step from which the interval
    stays on that side (None: it never settles, or spans zero at the end), and the steps at
    which GON is significantly ahead (interval below zero) or behind (above)."""

    rival: str
    last_step: int
    last: PairedDifference
    last_side: str
    settled_from: int | None
    steps_gon_ahead: tuple[int, ...]
    steps_gon_behind: tuple[int, ...]


@dataclass(frozen=True)
class Censored:
    """A run whose held-out curve never reached the threshold: its last step and final loss."""

    seed: int
    last_step: int
    final: float


@dataclass(frozen=True)
class ThresholdRow:
    """One method's time to the threshold over its runs: steps and seconds over the runs that
    reached it (None when none did), the censored ones apart."""

    method: str
    method_id: str
    reached: int
    censored: tuple[Censored, ...]
    steps: MeanCI | None
    seconds: MeanCI | None

    @property
    def n(self) -> int:
        return self.reached + len(self.censored)


@dataclass(frozen=True)
class GonVsAE:
    """GON − AE steps and seconds to the threshold, paired over the ``common`` seeds where both
    reached it (None when there is no such seed), with the verdicts of :func:`_speed_verdict`."""

    gon: ThresholdRow
    ae: ThresholdRow
    common: int
    steps: PairedDifference | None
    seconds: PairedDifference | None
    steps_verdict: str
    seconds_verdict: str

    @property
    def gon_censored(self) -> int:
        return len(self.gon.censored)

    @property
    def ae_censored(self) -> int:
        return len(self.ae.censored)


@dataclass(frozen=True)
class SpeedItem:
    """One dataset × nz: the threshold (None without an AE curve) and the AE's final loss it
    is a multiple of, each method's time to it, GON vs the AE, GON − each rival along training;
    apart from these, the data of its panel in the two figures."""

    dataset: str
    dataset_id: str
    nz: int
    along_training: tuple[AlongTraining, ...]
    panel: ConvergencePanel = field(repr=False, compare=False)
    threshold: float | None = None
    ae_final: float | None = None
    rows: tuple[ThresholdRow, ...] = ()
    gon_vs_ae: GonVsAE | None = None


@dataclass(frozen=True)
class ConvergenceSpeed:
    """The convergence-speed subsection; the figures' paths are set once drawn."""

    factor: float
    scale: Scale
    items: tuple[SpeedItem, ...] = ()
    missing_curves: tuple[str, ...] = ()
    figure: str | None = None
    figure_difference: str | None = None

    @property
    def status(self) -> str:
        return "run" if self.items else "not run"


def paired_curve_difference(
    long: pd.DataFrame, rival: str, confidence: float, *, relative: bool = False
) -> pd.DataFrame:
    """GON − ``rival`` test loss at each learning-curve step, paired over the seeds both have.

    ``long``: step, test_mse_per_pixel, method, seed (every main run of one dataset × nz). Rows:
    rival, step, mean, low, high, n (the paired t-interval; NaN bounds with one seed).
    ``relative``: the per-seed difference as a percentage of the rival's loss at that step, so
    that early and late points share one readable scale.
    """
    cols = ["rival", "step", "mean", "low", "high", "n"]
    wide = long[long["method"].isin(["gon", rival])].pivot_table(
        index=["step", "seed"], columns="method", values="test_mse_per_pixel"
    )
    if "gon" not in wide or rival not in wide:
        return pd.DataFrame(columns=cols)
    wide = wide.dropna(subset=["gon", rival])
    rows = []
    for step, g in wide.groupby(level="step"):
        gon, other = g["gon"].to_numpy(), g[rival].to_numpy()
        if relative:
            gon, other = 100.0 * gon / other, np.full_like(other, 100.0)
        d = paired_difference(gon, other, confidence)
        rows.append(
            {
                "rival": rival,
                "step": int(step),
                "mean": d.mean,
                "low": d.low,
                "high": d.high,
                "n": d.n,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _along_training(diff: pd.DataFrame, rival: str) -> AlongTraining | None:
    """Where the paired difference's interval lies along training: ahead, behind, undecided."""
    d = diff[(diff["rival"] == rival) & (diff["step"] > 0)].sort_values("step")
    if d.empty:
        return None
    side = [side_of_zero(lo, h) for lo, h in zip(d["low"], d["high"], strict=True)]
    last = d.iloc[-1]
    # the first step from which the interval stays on the last point's side (None: never settles)
    settled = None
    if side[-1] != SPANS:
        i = len(side) - 1
        while i > 0 and side[i - 1] == side[-1]:
            i -= 1
        settled = int(d["step"].iloc[i])
    return AlongTraining(
        rival=method_label(rival),
        last_step=int(last["step"]),
        last=PairedDifference(
            mean=float(last["mean"]),
            low=float(last["low"]),
            high=float(last["high"]),
            n=int(last["n"]),
            std=math.nan,
            p_value=math.nan,
        ),
        last_side=side[-1],
        settled_from=settled,
        steps_gon_ahead=tuple(int(s) for s, x in zip(d["step"], side, strict=True) if x == BELOW),
        steps_gon_behind=tuple(int(s) for s, x in zip(d["step"], side, strict=True) if x == ABOVE),
    )


def convergence_section(
    main_runs: Sequence[Any], params: Params, *, confidence: float
) -> ConvergenceSpeed:
    """Steps and seconds until each main run's held-out learning curve reaches the threshold.

    The threshold of a dataset × nz is ``report.convergence_threshold`` × the AE's final
    curve loss (mean over its seeds, last curve point). A run that never reaches it is
    censored: counted and shown, never averaged (a mean that treats it as 0 would reward it).
    """
    factor = params.report.convergence_threshold
    curves = {id(r): c for r in main_runs if (c := read_curve(r)) is not None}
    if not curves:
        return ConvergenceSpeed(factor=factor, scale=main_scale(params))
    listed, methods_pref = params.data.datasets, params.train.methods
    keys = sorted(
        {(r.dataset, int(r.nz)) for r in main_runs if id(r) in curves},
        key=lambda k: (rank(k[0], listed), k[1]),
    )
    items = []
    for dataset, nz in keys:
        runs = [r for r in main_runs if (r.dataset, int(r.nz)) == (dataset, nz) and id(r) in curves]
        items.append(_item(dataset, nz, runs, curves, factor, methods_pref, confidence))
    return ConvergenceSpeed(
        factor=factor,
        scale=main_scale(params),
        items=tuple(items),
        missing_curves=tuple(sorted(r.name for r in main_runs if id(r) not in curves)),
    )


def _item(
    dataset: str,
    nz: int,
    runs: Sequence[Any],
    curves: Mapping[int, pd.DataFrame],
    factor: float,
    methods_pref: Sequence[str],
    confidence: float,
) -> SpeedItem:
    """One dataset × nz: the threshold, each method's time to it, GON vs the AE; the curves."""
    ae_final = [
        float(curves[id(r)]["test_mse_per_pixel"].iloc[-1]) for r in runs if r.method == "ae"
    ]
    long = pd.concat(
        [
            curves[id(r)][list(CURVE_COLUMNS)].assign(method=r.method, seed=int(r.seed))
            for r in runs
        ],
        ignore_index=True,
    )
    relative = pd.concat(
        [paired_curve_difference(long, rival, confidence, relative=True) for rival in RIVALS],
        ignore_index=True,
    )
    along = tuple(a for rival in RIVALS if (a := _along_training(relative, rival)))
    if not ae_final:
        panel = ConvergencePanel(dataset, nz, long, relative, None)
        return SpeedItem(dataset_label(dataset), dataset, nz, along, panel)
    ae_mean = sum(ae_final) / len(ae_final)
    threshold = factor * ae_mean
    reached: dict[str, Reached] = {}
    rows: dict[str, ThresholdRow] = {}
    for method in ordered({r.method for r in runs}, methods_pref):
        of_method = [x for x in runs if x.method == method]
        reached[method], censored = _time_to_threshold(of_method, curves, threshold)
        rows[method] = ThresholdRow(
            method=method_label(method),
            method_id=method,
            reached=len(reached[method]),
            censored=censored,
            steps=finite_ci((v[0] for v in reached[method].values()), confidence),
            seconds=finite_ci((v[1] for v in reached[method].values()), confidence),
        )
    gon_vs_ae = None
    if "gon" in rows and "ae" in rows:
        gon_vs_ae = _gon_vs_ae(reached["gon"], reached["ae"], rows["gon"], rows["ae"], confidence)
    return SpeedItem(
        dataset=dataset_label(dataset),
        dataset_id=dataset,
        nz=nz,
        along_training=along,
        panel=ConvergencePanel(dataset, nz, long, relative, threshold),
        threshold=threshold,
        ae_final=ae_mean,
        rows=tuple(rows.values()),
        gon_vs_ae=gon_vs_ae,
    )


def _time_to_threshold(
    runs: Sequence[Any], curves: Mapping[int, pd.DataFrame], threshold: float
) -> tuple[Reached, tuple[Censored, ...]]:
    """Steps and seconds to the threshold per seed; the runs that never reach it (censored)."""
    per_seed: Reached = {}
    censored = []
    for r in runs:
        c = curves[id(r)]
        steps = time_to_threshold(c["step"], c["test_mse_per_pixel"], threshold)
        secs = time_to_threshold(c["train_seconds"], c["test_mse_per_pixel"], threshold)
        if math.isnan(steps):
            censored.append(
                Censored(
                    seed=int(r.seed),
                    last_step=int(c["step"].iloc[-1]),
                    final=float(c["test_mse_per_pixel"].iloc[-1]),
                )
            )
        else:
            per_seed[int(r.seed)] = (steps, secs)
    return per_seed, tuple(censored)


def _speed_verdict(
    d: PairedDifference | None, gon_censored: int, ae_censored: int, confidence: float
) -> str:
    """GON vs the AE in time to threshold: censoring first, then the paired test."""
    if gon_censored > ae_censored:
        return "GON not faster (it failed to reach the threshold in more runs)"
    if ae_censored > gon_censored:
        return "GON faster (the AE failed to reach the threshold in more runs)"
    if d is None:
        return "not tested (no seed where both reached the threshold)"
    v = paired_verdict(d.mean, d.p_value, significance_level(confidence))
    if v == NOT_TESTED:
        return f"not tested (paired test undefined with n = {d.n})"
    return {LOWER: "GON faster", HIGHER: "GON slower"}.get(v, v)


def _gon_vs_ae(
    gon: Reached, ae: Reached, gon_row: ThresholdRow, ae_row: ThresholdRow, confidence: float
) -> GonVsAE:
    """Paired GON − AE steps and seconds to threshold over seeds where both reached it."""
    steps, seconds = (
        paired_by_key(
            {s: v[i] for s, v in gon.items()}, {s: v[i] for s, v in ae.items()}, confidence
        )
        for i in (0, 1)
    )
    g_cens, a_cens = len(gon_row.censored), len(ae_row.censored)
    return GonVsAE(
        gon=gon_row,
        ae=ae_row,
        common=len(set(gon) & set(ae)),
        steps=steps,
        seconds=seconds,
        steps_verdict=_speed_verdict(steps, g_cens, a_cens, confidence),
        seconds_verdict=_speed_verdict(seconds, g_cens, a_cens, confidence),
    )


def draw_convergence_figures(
    section: ConvergenceSpeed, fig_dir: Path, *, methods: Sequence[str], confidence: float
) -> ConvergenceSpeed:
    """The learning curves and the paired differences along training, when there are curves;
    the section with the figures' paths.

    ``methods``: the params' method order, so that a method keeps its colour when another is
    absent.
    """
    panels = [item.panel for item in section.items]
    if not panels:
        return section
    fig_dir.mkdir(parents=True, exist_ok=True)
    controls_figures.plot_convergence_curves(
        panels,
        fig_dir / "study_convergence.png",
        factor=section.factor,
        methods=list(methods),
        confidence=confidence,
    )
    figure_difference = None
    diff_panels = [p for p in panels if not p.diff.empty]
    if diff_panels:
        controls_figures.plot_paired_difference(
            diff_panels, fig_dir / "study_paired_difference.png", confidence=confidence
        )
        figure_difference = "figures/study_paired_difference.png"
    return replace(
        section, figure="figures/study_convergence.png", figure_difference=figure_difference
    )
