"""The Gradient Flow Encoding convergence section (docs/protocol.md §4).

Per dataset (runs/convergence/<dataset>/): the solvers' summary table and two findings, the
2nd-order flow vs the 1st-order one at equal iterations and the adaptive step vs the 1st-order
flow at equal gradient evaluations, paired over test images when the per-image curves exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from repro.report.claims.registry import claims_by_id
from repro.report.figures import common as figures
from repro.report.formatting import ordered
from repro.report.labels import FLOWS, dataset_label, flow_label, loss_label
from repro.report.loaders import ConvergenceStudy
from repro.report.verdicts import SPANS, side_of_zero
from repro.stats import paired_difference

# The published claims shown next to this section (ids in claims.yaml).
CONVERGENCE_CLAIMS = ("gfe-second-order-faster", "gfe-adaptive-step-stiffness")


def _per_image(curves: pd.DataFrame, flow: str, iteration: int) -> pd.Series:
    sel = curves[(curves["flow"] == flow) & (curves["iteration"] == iteration)]
    return sel.set_index("image")["loss"].astype(float).sort_index()


def _paired(
    curves: pd.DataFrame, a: tuple[str, int], b: tuple[str, int], confidence: float
) -> dict[str, Any]:
    """Mean per-image loss of flow a at iteration a[1] vs flow b at b[1], paired over images."""
    la, lb = _per_image(curves, *a), _per_image(curves, *b)
    common = la.index.intersection(lb.index)
    la, lb = la.loc[common], lb.loc[common]
    diff = paired_difference(la.to_numpy(), lb.to_numpy(), confidence)
    return {
        "a": float(la.mean()),
        "b": float(lb.mean()),
        "lower": bool(la.mean() < lb.mean()),
        "tie": bool(la.mean() == lb.mean()),
        "diff": diff,
        "resolved": None if math.isnan(diff.low) else side_of_zero(diff.low, diff.high) != SPANS,
        "images": int(len(common)),
    }


def _last_iteration(curves: pd.DataFrame, flow: str, max_nfe: float | None = None) -> int | None:
    sel = curves[curves["flow"] == flow]
    if max_nfe is not None:
        sel = sel[sel["nfe"] <= max_nfe]
    return None if sel.empty else int(sel["iteration"].max())


def _convergence_findings(
    summary: Mapping[str, Any], curves: pd.DataFrame | None, confidence: float
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(2nd vs 1st order at the last common iteration, adaptive vs 1st order per gradient eval).

    With the per-image curves both are paired over the test images; with only summary.json the
    final means are compared where the summary allows it (equal iterations; one flow lower in
    loss with no more gradient evaluations) and None is returned otherwise.
    """
    flows = summary.get("flows", {}) or {}
    second = adaptive = None
    if curves is not None and not curves.empty:
        have = set(curves["flow"])
        if {"first_order", "second_order"} <= have:
            it = min(_last_iteration(curves, f) or 0 for f in ("first_order", "second_order"))
            second = {
                "iteration": it,
                "from_curves": True,
                **_paired(curves, ("second_order", it), ("first_order", it), confidence),
            }
        if {"first_order", "adaptive_step"} <= have:
            budget = min(
                float(curves.loc[curves["flow"] == f, "nfe"].max())
                for f in ("first_order", "adaptive_step")
            )
            it_a = _last_iteration(curves, "adaptive_step", budget)
            it_f = _last_iteration(curves, "first_order", budget)
            if it_a is not None and it_f is not None:
                nfe_of = curves.groupby(["flow", "iteration"])["nfe"].max()
                adaptive = {
                    "budget": budget,
                    "from_curves": True,
                    "iteration_a": it_a,
                    "iteration_b": it_f,
                    "nfe_a": float(nfe_of[("adaptive_step", it_a)]),
                    "nfe_b": float(nfe_of[("first_order", it_f)]),
                    **_paired(curves, ("adaptive_step", it_a), ("first_order", it_f), confidence),
                }
        return second, adaptive
    f1, f2, fa = (flows.get(k) for k in ("first_order", "second_order", "adaptive_step"))
    if f1 and f2 and f1.get("iterations") == f2.get("iterations"):
        a, b = float(f2["final_mean_loss"]), float(f1["final_mean_loss"])
        second = {
            "iteration": int(f1["iterations"]),
            "from_curves": False,
            "a": a,
            "b": b,
            "lower": a < b,
            "tie": a == b,
        }
    if f1 and fa:
        la, lb = float(fa["final_mean_loss"]), float(f1["final_mean_loss"])
        na, nb = float(fa["nfe"]), float(f1["nfe"])
        # Decidable per gradient evaluation only when one flow is ahead on both counts.
        if (na <= nb and la < lb) or (na >= nb and la > lb):
            adaptive = {
                "from_curves": False,
                "a": la,
                "b": lb,
                "nfe_a": na,
                "nfe_b": nb,
                "lower": la < lb,
                "tie": False,
            }
    return second, adaptive


@dataclass(frozen=True)
class ConvergenceItem:
    """One dataset's study: the solvers' table, the two findings (dicts of
    :func:`_convergence_findings`) and, once drawn, the figure's path."""

    dataset: str
    label: str
    summary: Mapping[str, Any]
    loss: str
    loss_label: str
    rows: tuple[dict[str, Any], ...]
    curves: pd.DataFrame | None = field(repr=False)  # usable per-image curves, else None
    second_vs_first: dict[str, Any] | None
    adaptive_vs_first: dict[str, Any] | None
    figure: str | None = None


@dataclass(frozen=True)
class ConvergenceSection:
    status: str  # "run" or "not run"
    items: tuple[ConvergenceItem, ...]
    claims: list[dict[str, Any]]


def convergence_sections(
    studies: Sequence[ConvergenceStudy],
    claims: Mapping[str, Any],
    *,
    confidence: float,
) -> ConvergenceSection:
    """Per dataset: the summary table and the findings; figures are drawn later (figure None)."""
    items = []
    for study in studies:
        s, curves = study.summary, study.curves
        flows = s.get("flows", {}) or {}
        rows = tuple(
            {
                "flow": flow_label(flow),
                "iterations": v.get("iterations"),
                "nfe": v.get("nfe"),
                "seconds": v.get("seconds"),
                "final_mean_loss": v.get("final_mean_loss"),
            }
            for flow, v in ((f, flows[f]) for f in ordered(flows, FLOWS))
        )
        usable = curves is not None and not curves.empty
        if usable and any(c not in curves for c in figures.CONVERGENCE_COLUMNS):
            usable = False
        second, adaptive = _convergence_findings(s, curves if usable else None, confidence)
        loss = str(s.get("loss", "sse"))
        dataset = str(s.get("dataset", study.dataset))
        items.append(
            ConvergenceItem(
                dataset=dataset,
                label=dataset_label(dataset),
                summary=s,
                loss=loss,
                loss_label=loss_label(loss),
                rows=rows,
                curves=curves if usable else None,
                second_vs_first=second,
                adaptive_vs_first=adaptive,
            )
        )
    return ConvergenceSection(
        status="run" if items else "not run",
        items=tuple(items),
        claims=claims_by_id(claims, CONVERGENCE_CLAIMS),
    )
