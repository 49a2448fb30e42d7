"""Decision rules of the ablation studies, written once so the report and the tests share them.

* :func:`compare_with_reference` — "is ELU best?": paired comparisons of one variant against each
  other across matched seeds, Holm-corrected, and a three-way outcome.
* :func:`time_to_threshold` — convergence speed: when a validation curve first reaches a level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from repro.stats import MeanCI, PairedDifference, mean_ci, paired_difference

BEST = "best"
NOT_DISTINGUISHABLE = "not distinguishable"
NOT_BEST = "not best"


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down; NaN stays NaN and is not counted).

    Why: "ELU beats each of six others" is six tests; without a correction one of them comes
    out "significant" by chance far more often than 5% of the time.
    """
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    m = len(order)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Contrast:
    """The reference minus one other variant over matched seeds (negative: reference lower)."""

    other: str
    difference: PairedDifference
    p_holm: float

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_holm) and self.p_holm < 0.05


@dataclass(frozen=True)
class ReferenceComparison:
    """The outcome of "is ``reference`` the best variant?" and the numbers behind it."""

    reference: str
    outcome: str  # BEST | NOT_DISTINGUISHABLE | NOT_BEST
    means: dict[str, MeanCI]
    contrasts: list[Contrast]
    lowest: str

    def sentence(self, what: str = "test loss") -> str:
        better = [c.other for c in self.contrasts if c.significant and c.difference.mean > 0]
        worse = [c.other for c in self.contrasts if c.significant and c.difference.mean < 0]
        n = self.means[self.reference].n
        base = (
            f"{self.reference} has the lowest mean {what}"
            if self.lowest == self.reference
            else f"{self.lowest} has the lowest mean {what}, not {self.reference}"
        )
        detail = (
            f"{self.reference} is significantly lower than {', '.join(worse) or 'none'} and "
            f"significantly higher than {', '.join(better) or 'none'} "
            f"(paired t-tests over {n} matched seeds, Holm-corrected, α = 0.05)"
        )
        return f"Outcome: **{self.reference} {self.outcome}**. {base}; {detail}."


def compare_with_reference(
    values: Mapping[str, Mapping[int, float]], reference: str, confidence: float = 0.95
) -> ReferenceComparison:
    """Is ``reference`` the best (lowest) variant, given per-seed values of every variant?

    ``values`` maps variant → {seed: value}; only seeds every compared pair shares are paired.
    Outcome rule: **best** when the reference is significantly lower than every other variant;
    **not best** when some other variant is significantly lower than the reference; otherwise
    **not distinguishable**. Significance: Holm-adjusted paired t-test p < 0.05.
    """
    if reference not in values:
        raise ValueError(f"reference {reference!r} has no values; have {sorted(values)}")
    means = {k: mean_ci(list(v.values()), confidence) for k, v in values.items() if v}
    diffs: list[tuple[str, PairedDifference]] = []
    ref = values[reference]
    for other, vals in values.items():
        if other == reference:
            continue
        seeds = sorted(set(ref) & set(vals))
        if not seeds:
            continue
        diffs.append(
            (
                other,
                paired_difference([ref[s] for s in seeds], [vals[s] for s in seeds], confidence),
            )
        )
    adjusted = holm_adjust([d.p_value for _, d in diffs])
    contrasts = [Contrast(o, d, p) for (o, d), p in zip(diffs, adjusted, strict=True)]
    if contrasts and all(c.significant and c.difference.mean < 0 for c in contrasts):
        outcome = BEST
    elif any(c.significant and c.difference.mean > 0 for c in contrasts):
        outcome = NOT_BEST
    else:
        outcome = NOT_DISTINGUISHABLE
    lowest = min(means, key=lambda k: means[k].mean)
    return ReferenceComparison(reference, outcome, means, contrasts, lowest)


def time_to_threshold(
    x: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray, threshold: float
) -> float:
    """The first ``x`` (step, seconds, ...) at which a loss curve reaches ``threshold``.

    Linear interpolation between the two curve points that straddle the threshold, so the
    answer does not depend on how often the curve was sampled more than it must. NaN when the
    curve never gets there (the run has not converged by that standard: censored, not zero).
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(loss, dtype=float)
    if xs.shape != ys.shape or xs.size == 0:
        raise ValueError(f"x and loss must be equally long and non-empty ({xs.size} vs {ys.size})")
    below = np.flatnonzero(ys <= threshold)
    if below.size == 0:
        return math.nan
    i = int(below[0])
    if i == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (y0 - threshold) / (y0 - y1) * (x1 - x0))
