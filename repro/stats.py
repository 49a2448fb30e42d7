"""Small-sample statistics for comparing runs across seeds, and a learning curve's time to a level.

The study trains a handful of seeds per configuration (three in the quick profile), so normal
approximations and bootstrap intervals are both unreliable; the Student-t interval is the
textbook answer for the mean of a few roughly normal values, and the paired t-test is the
matching answer when two methods share seeds. Everything here is a thin, documented wrapper
over :mod:`scipy.stats` so a reader can check the numbers by hand; what the numbers decide is
:mod:`repro.report.verdicts`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values with a two-sided Student-t confidence interval [low, high].

    ``std`` is the sample standard deviation (ddof=1). With ``n == 1`` there is no spread to
    estimate, so ``std``, ``low`` and ``high`` are NaN: a single seed gives a number, not an
    interval, and the report must say so instead of printing a zero-width interval.
    """

    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def half_width(self) -> float:
        """Half the interval width (NaN when the interval is undefined)."""
        return (self.high - self.low) / 2.0

    def overlaps(self, other: MeanCI) -> bool | None:
        """Whether the two intervals share a point; ``None`` when either is undefined (n=1)."""
        if any(math.isnan(v) for v in (self.low, self.high, other.low, other.high)):
            return None
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True)
class PairedDifference(MeanCI):
    """Mean of ``a - b`` over matched pairs, its t-interval and the paired t-test p-value.

    ``p_value`` is NaN when it is undefined: fewer than two pairs, or all differences equal
    (zero variance, where the t statistic is 0/0).
    """

    p_value: float


def _as_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Validate input early: a NaN or empty input would otherwise give a silent NaN interval."""
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{name}: need at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite, got {arr.tolist()}")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def mean_or_none(values: Sequence[float]) -> float | None:
    """The arithmetic mean of ``values``; None when there are none."""
    return sum(values) / len(values) if len(values) else None


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanCI:
    """Mean and two-sided Student-t interval: mean ± t_{(1+c)/2, n-1} · s / √n.

    Why t and not a bootstrap: with three seeds a bootstrap can only resample three numbers and
    its interval is far too narrow; the t-interval is exact for normal data and honest about
    how little three values say. ``n == 1`` returns NaN bounds (see :class:`MeanCI`).
    """
    _check_confidence(confidence)
    arr = _as_array(values, "mean_ci")
    n = int(arr.size)
    mean = float(arr.mean())
    if n == 1:
        return MeanCI(mean=mean, low=math.nan, high=math.nan, n=1, std=math.nan)
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1)) * std / math.sqrt(n)
    return MeanCI(mean=mean, low=mean - half, high=mean + half, n=n, std=std)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
) -> PairedDifference:
    """Mean difference ``a - b`` over matched seeds, its t-interval and ``ttest_rel`` p-value.

    Why paired: when both methods run with the same seeds (same data order, same evaluation
    batches) the seed-to-seed variation they share cancels in the difference, which is what
    the interval and test are then about.
    """
    _check_confidence(confidence)
    arr_a = _as_array(a, "paired_difference a")
    arr_b = _as_array(b, "paired_difference b")
    if arr_a.shape != arr_b.shape:
        raise ValueError(
            f"paired_difference: a and b differ in length ({arr_a.size} vs {arr_b.size})"
        )
    ci = mean_ci(arr_a - arr_b, confidence)
    if ci.n < 2 or ci.std == 0.0:
        p_value = math.nan
    else:
        p_value = float(stats.ttest_rel(arr_a, arr_b).pvalue)
    return PairedDifference(
        mean=ci.mean, low=ci.low, high=ci.high, n=ci.n, std=ci.std, p_value=p_value
    )


def paired_by_key(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    confidence: float = 0.95,
    *,
    sort: bool = True,
) -> PairedDifference | None:
    """:func:`paired_difference` of ``a − b`` over the keys both have (seeds, (nz, seed), image
    indices), sorted or in ``a``'s order; None when they share none."""
    keys = [k for k in a if k in b]
    if sort:
        keys.sort()
    if not keys:
        return None
    return paired_difference([a[k] for k in keys], [b[k] for k in keys], confidence)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down; NaN stays NaN and is not counted).

    Why: "ELU beats each of six others" is six tests; without a correction one of them comes
    out "significant" by chance far more often than α of the time. The adjusted p-values are
    compared with α by :func:`repro.report.verdicts.holm_contrasts`.
    """
    p = np.asarray(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    factors = len(order) - np.arange(len(order))  # m, m − 1, ..., 1 from the smallest p up
    adjusted = np.full(p.shape, math.nan)
    adjusted[order] = np.maximum.accumulate(np.minimum(1.0, factors * p[order]))
    return adjusted.tolist()


def samples_needed(
    std: float, half_width: float, confidence: float = 0.95, *, cap: int = 10_000
) -> int | None:
    """Smallest n ≥ 2 whose t-interval is narrower than ``half_width``:
    ``t_{(1+c)/2, n-1} · std / √n < half_width``.

    The "how many seeds would decide it" of an inconclusive comparison: with the observed paired
    spread ``std`` and the distance ``half_width`` from the observed mean to the decision's edge
    (0, or the margin), this many seeds would give an interval that no longer straddles the edge
    — if the mean and spread stayed as observed (a planning estimate, not a promise). None when
    no n up to ``cap`` would do (the mean sits on the edge) or the spread is unknown (one seed).
    """
    _check_confidence(confidence)
    if not (half_width > 0) or not math.isfinite(std):
        return None
    if std == 0.0:
        return 2

    def narrow_enough(n: int) -> bool:
        return float(stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1)) * std / math.sqrt(n) < (
            half_width
        )

    if not narrow_enough(cap):
        return None
    lo, hi = 2, cap  # the width falls with n: bisect for the first n that is narrow enough
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if narrow_enough(mid) else (mid + 1, hi)
    return lo


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
