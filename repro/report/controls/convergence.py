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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.config import Params
from repro.report.controls import figures as controls_figures
from repro.report.controls.figures import ConvergencePanel
from repro.report.labels import dataset_label, method_label
from repro.report.studies.common import finite_ci, main_scale, ordered, rank
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
from repro.stats import PairedDifference, paired_by_key, paired_difference, time_to_threshold

RIVALS = ("ae", "ae_linear")  # GON's rivals along training: the conv AE, the linear-encoder AE
Reached = dict[int, tuple[float, float]]  # seed → (steps, seconds) to the threshold


@dataclass(frozen=True)
class ConvergenceSection:
    """The subsection's template context and, apart from it, the panels of its two figures."""

    context: dict[str, Any]
    panels: list[ConvergencePanel] = field(default_factory=list)


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


def _crossing_summary(diff: pd.DataFrame, rival: str, confidence: float) -> dict[str, Any] | None:
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
    return {
        "rival": method_label(rival),
        "last_step": int(last["step"]),
        "last": PairedDifference(
            mean=float(last["mean"]),
            low=float(last["low"]),
            high=float(last["high"]),
            n=int(last["n"]),
            std=math.nan,
            p_value=math.nan,
        ),
        "last_side": side[-1],
        "settled_from": settled,
        "steps_gon_ahead": [int(s) for s, x in zip(d["step"], side, strict=True) if x == BELOW],
        "steps_gon_behind": [int(s) for s, x in zip(d["step"], side, strict=True) if x == ABOVE],
    }


def convergence_section(
    main_runs: Sequence[Any], params: Params, *, confidence: float
) -> ConvergenceSection:
    """Steps and seconds until each main run's held-out learning curve reaches the threshold.

    The threshold of a dataset × nz is ``report.convergence_threshold`` × the AE's final
    curve loss (mean over its seeds, last curve point). A run that never reaches it is
    censored: counted and shown, never averaged (a mean that treats it as 0 would reward it).
    """
    factor = params.report.convergence_threshold
    curves = {id(r): c for r in main_runs if (c := read_curve(r)) is not None}
    base: dict[str, Any] = {
        "status": "run" if curves else "not run",
        "factor": factor,
        "scale": main_scale(params),
        "items": [],
        "figure": None,
        "figure_difference": None,
        "missing_curves": sorted(r.name for r in main_runs if id(r) not in curves)
        if curves
        else [],
    }
    if not curves:
        return ConvergenceSection(base)
    listed, methods_pref = params.data.datasets, params.train.methods
    keys = sorted(
        {(r.dataset, int(r.nz)) for r in main_runs if id(r) in curves},
        key=lambda k: (rank(k[0], listed), k[1]),
    )
    items, panels = [], []
    for dataset, nz in keys:
        runs = [r for r in main_runs if (r.dataset, int(r.nz)) == (dataset, nz) and id(r) in curves]
        item, panel = _item(dataset, nz, runs, curves, factor, methods_pref, confidence)
        items.append(item)
        panels.append(panel)
    return ConvergenceSection(base | {"items": items}, panels)


def _item(
    dataset: str,
    nz: int,
    runs: Sequence[Any],
    curves: Mapping[int, pd.DataFrame],
    factor: float,
    methods_pref: Sequence[str],
    confidence: float,
) -> tuple[dict[str, Any], ConvergencePanel]:
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
    item: dict[str, Any] = {
        "dataset": dataset_label(dataset),
        "dataset_id": dataset,
        "nz": nz,
        "threshold": None,
        "ae_final": None,
        "rows": [],
        "gon_vs_ae": None,
        "along_training": [
            c for rival in RIVALS if (c := _crossing_summary(relative, rival, confidence))
        ],
    }
    if not ae_final:
        return item, ConvergencePanel(dataset, nz, long, relative, None)
    ae_mean = sum(ae_final) / len(ae_final)
    threshold = factor * ae_mean
    item |= {"threshold": threshold, "ae_final": ae_mean}
    reached: dict[str, Reached] = {}
    for method in ordered({r.method for r in runs}, methods_pref):
        of_method = [x for x in runs if x.method == method]
        reached[method], censored = _time_to_threshold(of_method, curves, threshold)
        item["rows"].append(
            {
                "method": method_label(method),
                "method_id": method,
                "n": len(reached[method]) + len(censored),
                "reached": len(reached[method]),
                "censored": censored,
                "steps": finite_ci((v[0] for v in reached[method].values()), confidence),
                "seconds": finite_ci((v[1] for v in reached[method].values()), confidence),
            }
        )
    rows = {r["method_id"]: r for r in item["rows"]}
    if "gon" in rows and "ae" in rows:
        item["gon_vs_ae"] = _gon_vs_ae(reached["gon"], reached["ae"], rows, confidence)
    return item, ConvergencePanel(dataset, nz, long, relative, threshold)


def _time_to_threshold(
    runs: Sequence[Any], curves: Mapping[int, pd.DataFrame], threshold: float
) -> tuple[Reached, list[dict[str, Any]]]:
    """Steps and seconds to the threshold per seed; the runs that never reach it (censored)."""
    per_seed: Reached = {}
    censored = []
    for r in runs:
        c = curves[id(r)]
        steps = time_to_threshold(c["step"], c["test_mse_per_pixel"], threshold)
        secs = time_to_threshold(c["train_seconds"], c["test_mse_per_pixel"], threshold)
        if math.isnan(steps):
            censored.append(
                {
                    "seed": int(r.seed),
                    "last_step": int(c["step"].iloc[-1]),
                    "final": float(c["test_mse_per_pixel"].iloc[-1]),
                }
            )
        else:
            per_seed[int(r.seed)] = (steps, secs)
    return per_seed, censored


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
    gon: Reached, ae: Reached, rows: Mapping[str, dict[str, Any]], confidence: float
) -> dict[str, Any]:
    """Paired GON − AE steps and seconds to threshold over seeds where both reached it."""
    steps, seconds = (
        paired_by_key(
            {s: v[i] for s, v in gon.items()}, {s: v[i] for s, v in ae.items()}, confidence
        )
        for i in (0, 1)
    )
    g_cens, a_cens = len(rows["gon"]["censored"]), len(rows["ae"]["censored"])
    return {
        "common": len(set(gon) & set(ae)),
        "gon_censored": g_cens,
        "ae_censored": a_cens,
        "steps": steps,
        "seconds": seconds,
        "steps_verdict": _speed_verdict(steps, g_cens, a_cens, confidence),
        "seconds_verdict": _speed_verdict(seconds, g_cens, a_cens, confidence),
        "gon": rows["gon"],
        "ae": rows["ae"],
    }


def draw_convergence_figures(
    section: ConvergenceSection, fig_dir: Path, *, methods: Sequence[str], confidence: float
) -> dict[str, Any]:
    """The learning curves and the paired differences along training, when there are curves;
    the section's context with the figures' paths.

    ``methods``: the params' method order, so that a method keeps its colour when another is
    absent.
    """
    context, panels = dict(section.context), section.panels
    if not panels:
        return context
    fig_dir.mkdir(parents=True, exist_ok=True)
    controls_figures.plot_convergence_curves(
        panels,
        fig_dir / "study_convergence.png",
        factor=context["factor"],
        methods=list(methods),
        confidence=confidence,
    )
    context["figure"] = "figures/study_convergence.png"
    diff_panels = [p for p in panels if not p.diff.empty]
    if diff_panels:
        controls_figures.plot_paired_difference(
            diff_panels, fig_dir / "study_paired_difference.png", confidence=confidence
        )
        context["figure_difference"] = "figures/study_paired_difference.png"
    return context
