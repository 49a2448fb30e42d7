"""Report section "Activation functions": the claim that ELU is best.

The reproducibility report's claim 2: per method × activation, the held-out test loss in both
BatchNorm modes, with Holm-corrected paired t-tests against ``studies.activation.reference``
(:func:`repro.report.verdicts.compare_with_reference`), and the GON runs' held-out learning curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from repro.config import Params
from repro.report.formatting import ordered
from repro.report.labels import bn_label, method_label
from repro.report.studies import figures as study_figures
from repro.report.studies.common import (
    StudyHead,
    StudySection,
    VersusReference,
    bn_context,
    by_seed,
    finite_ci,
    runs_of,
    versus,
)
from repro.report.study_runs import CURVE_COLUMNS, StudyRun
from repro.report.verdicts import HIGHER, LOWER, ReferenceComparison, compare_with_reference
from repro.stats import MeanCI

POINT_COLUMNS = ["method", "activation", "seed", "bn_mode", "loss"]


@dataclass(frozen=True)
class ActivationCell(VersusReference):
    """One method × activation in one BN mode: its held-out test loss over seeds and, as a
    :class:`VersusReference`, its contrast with the reference activation."""

    ci: MeanCI | None


@dataclass(frozen=True)
class ActivationRow:
    """One table row: a method × activation, per BN mode its loss and contrast."""

    method_id: str
    activation: str
    reference: bool  # the activation is the reference
    n: int  # finished runs
    failed: int
    modes: dict[str, ActivationCell]

    @property
    def method(self) -> str:
        return method_label(self.method_id)


@dataclass(frozen=True)
class ActivationOutcome:
    """Is the reference the best activation, for one method × BN mode (None: not compared)."""

    method_id: str
    bn_mode: str
    headline: bool  # the headline BN mode
    comparison: ReferenceComparison | None

    @property
    def method(self) -> str:
        return method_label(self.method_id)

    @property
    def bn(self) -> str:
        return bn_label(self.bn_mode)

    @property
    def sentence(self) -> str | None:
        """The outcome in words (:func:`outcome_sentence`); None when not compared."""
        if self.comparison is None:
            return None
        return outcome_sentence(self.comparison, f"held-out test loss ({self.bn}, SSE per image)")


@dataclass(frozen=True, kw_only=True)
class ActivationSection(StudyHead):
    """The activation section: rows per method × activation, outcomes per method × BN mode."""

    reference: str
    rows: tuple[ActivationRow, ...] = ()
    outcomes: tuple[ActivationOutcome, ...] = ()

    @property
    def headline_outcome(self) -> ActivationOutcome | None:
        """GON's outcome in the headline BN mode, the one the report leads with."""
        return next((o for o in self.outcomes if o.method_id == "gon" and o.headline), None)

    @property
    def other_outcomes(self) -> tuple[ActivationOutcome, ...]:
        head = self.headline_outcome
        return tuple(o for o in self.outcomes if o is not head)


def activation_section(
    runs: Sequence[StudyRun],
    curves: pd.DataFrame,
    params: Params,
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> StudySection[ActivationSection]:
    """Per method × activation: test loss in both BN modes, contrasts with the reference."""
    a = params.studies.activation
    mine, bn = runs_of("activation", runs), bn_context(headline_bn)
    section = partial(ActivationSection.of, "activation", mine, params, claims, bn)
    if not mine:
        return StudySection(section(reference=a.reference))
    acts = ordered((r.record.get("activation") for r in mine), a.activations)
    methods = ordered((r.method for r in mine), a.methods)
    rows, outcomes, points = [], [], []
    for method in methods:
        of_method = [r for r in mine if r.method == method]
        comps = {
            mode: _comparison(of_method, mode, acts, a.reference, confidence) for mode in bn.modes
        }
        outcomes += [
            ActivationOutcome(method, mode, mode == headline_bn, comps[mode]) for mode in bn.modes
        ]
        for act in acts:
            group = [r for r in of_method if r.record.get("activation") == act]
            if group:
                rows.append(_row(method, act, group, comps, a.reference, confidence))
                points += _points(method, act, group, bn.modes)
    plot = partial(
        study_figures.plot_activation,
        _gon_curves(curves),
        reference=a.reference,
        activations=acts,
        methods=methods,
        modes=bn.modes,
        confidence=confidence,
    )
    model = section(reference=a.reference, rows=tuple(rows), outcomes=tuple(outcomes))
    return StudySection(model, pd.DataFrame(points, columns=POINT_COLUMNS), plot)


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


def _row(
    method: str,
    act: str,
    group: Sequence[StudyRun],
    comps: Mapping[str, ReferenceComparison | None],
    reference: str,
    confidence: float,
) -> ActivationRow:
    """One table row: a method × activation, its loss and contrast with the reference per mode."""
    ok = [r for r in group if r.ok]
    cells = {
        mode: ActivationCell(
            versus(comp, act),  # this − reference
            finite_ci((r.loss("test", mode) for r in ok), confidence),
        )
        for mode, comp in comps.items()
    }
    return ActivationRow(method, act, act == reference, len(ok), len(group) - len(ok), cells)


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
