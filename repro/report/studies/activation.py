"""Report section "Activation functions": the claim that ELU is best.

The reproducibility report's claim 2: per method × activation, the held-out test loss in both
BatchNorm modes, with Holm-corrected paired t-tests against ``studies.activation.reference``
(:func:`repro.report.verdicts.compare_with_reference`), and the GON runs' held-out learning curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import pandas as pd

from repro.config import Params
from repro.report.labels import bn_label, method_label
from repro.report.studies import figures as study_figures
from repro.report.studies.common import (
    StudySection,
    by_seed,
    finite_ci,
    ordered,
    study_context,
)
from repro.report.study_runs import CURVE_COLUMNS, StudyRun
from repro.report.verdicts import HIGHER, LOWER, ReferenceComparison, compare_with_reference

POINT_COLUMNS = ["method", "activation", "seed", "bn_mode", "loss"]


def activation_section(
    runs: Sequence[StudyRun],
    curves: pd.DataFrame,
    params: Params,
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> StudySection:
    """Per method × activation: test loss in both BN modes, contrasts with the reference."""
    a = params.studies.activation
    mine, base = study_context("activation", runs, params, claims, headline_bn)
    bn = base["bn"]
    base |= {"reference": a.reference, "rows": [], "outcomes": []}
    if not mine:
        return StudySection(base)
    acts = ordered((r.record.get("activation") for r in mine), a.activations)
    methods = ordered((r.method for r in mine), a.methods)
    rows, outcomes, points = [], [], []
    for method in methods:
        of_method = [r for r in mine if r.method == method]
        comps = {}
        for mode in bn.modes:
            comps[mode] = _comparison(of_method, mode, acts, a.reference, confidence)
            outcomes.append(_outcome(method, mode, comps[mode], headline_bn))
        for act in acts:
            group = [r for r in of_method if r.record.get("activation") == act]
            if group:
                rows.append(_row(method, act, group, comps, a.reference, bn.modes, confidence))
                points += _points(method, act, group, bn.modes)
    headline_gon = next((o for o in outcomes if o["method_id"] == "gon" and o["headline"]), None)
    context = base | {
        "rows": rows,
        "outcomes": outcomes,
        "headline_outcome": headline_gon,
        "other_outcomes": [o for o in outcomes if o is not headline_gon],
    }
    plot = partial(
        study_figures.plot_activation,
        _gon_curves(curves),
        reference=a.reference,
        activations=acts,
        methods=methods,
        modes=bn.modes,
        confidence=confidence,
    )
    return StudySection(context, pd.DataFrame(points, columns=POINT_COLUMNS), plot)


def _comparison(
    of_method: Sequence[StudyRun],
    mode: str,
    acts: Sequence[str],
    reference: str,
    confidence: float,
) -> ReferenceComparison | None:
    """Every activation against the reference for one method and BN mode (paired over seeds)."""
    values = {
        act: by_seed(
            (r for r in of_method if r.record.get("activation") == act),
            lambda r: r.loss("test", mode),
        )
        for act in acts
    }
    return compare_with_reference(values, reference, confidence)


def outcome_sentence(comp: ReferenceComparison, what: str) -> str:
    """The outcome of "is the reference the best activation?" in words, with its contrasts."""
    ref = comp.reference
    better = [c.other for c in comp.contrasts if c.verdict == HIGHER]
    worse = [c.other for c in comp.contrasts if c.verdict == LOWER]
    base = (
        f"{ref} has the lowest mean {what}"
        if comp.lowest == ref
        else f"{comp.lowest} has the lowest mean {what}, not {ref}"
    )
    detail = (
        f"{ref} is significantly lower than {', '.join(worse) or 'none'} and "
        f"significantly higher than {', '.join(better) or 'none'} "
        f"(paired t-tests over {comp.means[ref].n} matched seeds, Holm-corrected, "
        f"α = {comp.alpha:g})"
    )
    return f"Outcome: **{ref} {comp.outcome}**. {base}; {detail}."


def _outcome(
    method: str, mode: str, comp: ReferenceComparison | None, headline_bn: str
) -> dict[str, Any]:
    """One method × BN mode's comparison, with its sentence for the report."""
    return {
        "method": method_label(method),
        "method_id": method,
        "bn_mode": mode,
        "bn": bn_label(mode),
        "headline": mode == headline_bn,
        "comparison": comp,
        "sentence": outcome_sentence(comp, f"held-out test loss ({bn_label(mode)}, SSE per image)")
        if comp
        else None,
    }


def _row(
    method: str,
    act: str,
    group: Sequence[StudyRun],
    comps: Mapping[str, ReferenceComparison | None],
    reference: str,
    modes: Sequence[str],
    confidence: float,
) -> dict[str, Any]:
    """One table row: a method × activation, its loss and contrast with the reference per mode."""
    ok = [r for r in group if r.ok]
    cells = {}
    for mode in modes:
        c = comps[mode].versus(act) if comps[mode] is not None else None  # this − reference
        cells[mode] = {
            "ci": finite_ci((r.loss("test", mode) for r in ok), confidence),
            "diff": c.difference if c else None,
            "p_holm": c.p_holm if c else None,
        }
    return {
        "method": method_label(method),
        "activation": act,
        "reference": act == reference,
        "n": len(ok),
        "failed": len(group) - len(ok),
        "modes": cells,
    }


def _points(
    method: str, act: str, group: Sequence[StudyRun], modes: Sequence[str]
) -> list[dict[str, Any]]:
    """The figure's points: each finished run's test loss per BN mode."""
    ok = [r for r in group if r.ok]
    return [
        {"method": method, "activation": act, "seed": r.seed, "bn_mode": mode, "loss": v}
        for mode in modes
        for r in ok
        if (v := r.loss("test", mode)) is not None
    ]


def _gon_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """The GON runs' held-out learning curves of this study (empty when none were written)."""
    if not curves.empty and {"study", "method", "activation", *CURVE_COLUMNS} <= set(curves):
        return curves[(curves["study"] == "activation") & (curves["method"] == "gon")]
    return pd.DataFrame()
