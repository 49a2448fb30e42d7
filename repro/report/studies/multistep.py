"""Report section "Multi-step GON": k gradient steps from the origin.

The reproducibility report's extension (two steps lower the training loss): per k, the final
training loss, the held-out loss and the cost (seconds per epoch, autograd graph bytes per step);
every k > 1 against k = 1, paired over seeds and Holm-corrected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import pandas as pd

from repro.config import BN_MODES, Params
from repro.report.studies import figures as study_figures
from repro.report.studies.common import (
    StudySection,
    by_seed,
    finite_ci,
    finite_mean,
    study_context,
)
from repro.report.study_runs import MSE, SPLITS, SSE, StudyRun
from repro.report.verdicts import (
    HIGHER,
    LOWER,
    NOT_TESTED,
    ReferenceComparison,
    compare_with_reference,
    significance_level,
)

MB = 1024 * 1024
NOT_COMPARED = "not compared"  # no contrast with the baseline k (no seed in common with it)
Metric = Callable[[StudyRun], float | None]


def _pixels(r: StudyRun) -> float | None:
    """Values per image (pixels × channels): the ratio of the run's own two loss units."""
    for split in SPLITS:
        for mode in BN_MODES:
            sse, mse = r.loss(split, mode, SSE), r.loss(split, mode, MSE)
            if sse is not None and mse:
                return round(sse / mse)
    return None


def _train_sse(r: StudyRun) -> float | None:
    mse, px = r.value("final_train_mse_per_pixel"), _pixels(r)
    return mse * px if mse is not None and px else None


def multistep_section(
    runs: Sequence[StudyRun],
    params: Params,
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> StudySection:
    """Per k: losses and cost; k > 1 against k = 1 (paired over seeds, Holm-corrected)."""
    m = params.studies.multistep
    mine, base = study_context("multistep", runs, params, claims, headline_bn)
    bn = base["bn"]
    base |= {
        "alpha": significance_level(confidence),
        "learn_step_size": m.learn_step_size,
        "step_size": m.step_size,
        "rows": [],
        "findings": [],
        "baseline": None,
    }
    if not mine:
        return StudySection(base)
    ks = sorted({int(r.record.get("steps", 1)) for r in mine})
    of_k = {k: [r for r in mine if int(r.record.get("steps", 1)) == k] for k in ks}
    metrics: dict[str, Metric] = {
        "train": _train_sse,
        **{f"test_{mode}": (lambda r, mode=mode: r.loss("test", mode)) for mode in bn.modes},
    }
    baseline = 1 if 1 in ks else ks[0]
    comps = {
        key: compare_with_reference(
            {str(k): by_seed(of_k[k], get) for k in ks}, str(baseline), confidence
        )
        for key, get in metrics.items()
    }
    cost = {k: _cost([r for r in of_k[k] if r.ok]) for k in ks}
    rows = [_row(k, of_k[k], cost[k], comps, baseline, bn, confidence) for k in ks]
    points = [_point(k, r, bn.modes) for k in ks for r in of_k[k] if r.ok]
    findings = [_finding(row, cost, baseline) for row in rows if row["k"] != baseline]
    head = f"test_{headline_bn}"

    def ks_where(key: str, verdict: str) -> list[int]:
        return [f["k"] for f in findings if f["verdict"][key] == verdict]

    context = base | {
        "rows": rows,
        "baseline": baseline,
        "findings": findings,
        "lower_test": ks_where(head, LOWER),
        "higher_test": ks_where(head, HIGHER),
        "lower_train": ks_where("train", LOWER),
        "higher_train": ks_where("train", HIGHER),
        "tested": any(f["verdict"][head] not in (NOT_TESTED, NOT_COMPARED) for f in findings),
        "any_cuda": any(row["cuda_peak_mb"] is not None for row in rows),
    }
    plot = partial(study_figures.plot_multistep, modes=bn.modes, confidence=confidence)
    return StudySection(context, pd.DataFrame(points), plot)


def _cost(ok: Sequence[StudyRun]) -> dict[str, float | None]:
    """Mean cost of one k's finished runs: seconds per epoch, graph and CUDA peak bytes."""
    return {
        "seconds_per_epoch": finite_mean(r.value("seconds_per_epoch") for r in ok),
        "graph_bytes": finite_mean(r.value("graph_bytes_per_step") for r in ok),
        "cuda_peak_bytes": finite_mean(r.value("cuda_peak_bytes") for r in ok),
    }


def _row(
    k: int,
    group: Sequence[StudyRun],
    cost: Mapping[str, float | None],
    comps: Mapping[str, ReferenceComparison | None],
    baseline: int,
    bn: Mapping[str, Any],
    confidence: float,
) -> dict[str, Any]:
    """One table row: k's losses, cost and contrasts with the baseline k."""
    ok = [r for r in group if r.ok]
    learned = [v for r in ok if (v := r.value("learned_step_size")) is not None]
    contrasts = {}
    for key, comp in comps.items():
        c = comp.versus(str(k)) if comp is not None else None  # this k − baseline
        contrasts[key] = {
            "diff": c.difference if c else None,
            "p_holm": c.p_holm if c else None,
            "verdict": c.verdict if c else NOT_COMPARED,
        }
    return {
        "k": k,
        "n": len(ok),
        "failed": len(group) - len(ok),
        "train_mse": finite_ci((r.value("final_train_mse_per_pixel") for r in ok), confidence),
        "train_sse": finite_ci((_train_sse(r) for r in ok), confidence),
        "test": {
            mode: finite_ci((r.loss("test", mode) for r in ok), confidence) for mode in bn.modes
        },
        # How far the k steps move the latent: with batch statistics the first step is scaled
        # by 1/sqrt(eps) (docs/protocol.md §5, BatchNorm mode), so later steps may barely move it.
        "latent_norm": finite_ci(
            (r.loss("test", bn.headline, "latent_norm") for r in ok), confidence
        ),
        "seconds_per_epoch": finite_ci((r.value("seconds_per_epoch") for r in ok), confidence),
        "graph_mb": None if cost["graph_bytes"] is None else cost["graph_bytes"] / MB,
        "cuda_peak_mb": None if cost["cuda_peak_bytes"] is None else cost["cuda_peak_bytes"] / MB,
        "learned_step_size": finite_ci(learned, confidence),
        "learned_range": (min(learned), max(learned)) if learned else None,
        "contrasts": contrasts,
    }


def _point(k: int, r: StudyRun, modes: Sequence[str]) -> dict[str, Any]:
    """The figure's point of one finished run."""
    return {
        "k": k,
        "seed": r.seed,
        "train_sse": _train_sse(r),
        **{f"test_{mode}": r.loss("test", mode) for mode in modes},
        "seconds_per_epoch": r.value("seconds_per_epoch"),
        "graph_mb": None if (g := r.value("graph_bytes_per_step")) is None else g / MB,
    }


def _finding(
    row: Mapping[str, Any], cost: Mapping[int, Mapping[str, float | None]], baseline: int
) -> dict[str, Any]:
    """k > baseline: each loss's verdict against the baseline k, and the cost ratios."""
    k = row["k"]

    def ratio(key: str) -> float | None:
        a, b = cost[k][key], cost[baseline][key]
        return a / b if a is not None and b else None

    return {
        "k": k,
        "verdict": {key: c["verdict"] for key, c in row["contrasts"].items()},
        "seconds_ratio": ratio("seconds_per_epoch"),
        "graph_ratio": ratio("graph_bytes"),
        "cuda_ratio": ratio("cuda_peak_bytes"),
    }
