"""Decision rules: the one place where "is A lower than B?" becomes a verdict.

Why rules in code: a verdict typed by hand drifts from the numbers the moment a run changes.
Every comparison is decided here, at the report's confidence c (``report.confidence``) and the
significance level α = 1 − c (:func:`significance_level`).

* Published claims: ``claims.yaml`` names each claim's rule, and the rule alone makes it
  *reproduced*, *not reproduced*, *inconclusive* or *not tested*, with a one-sentence reason a
  reader can check by hand: :func:`judge_match` (a published number), :func:`judge_less` ("A is
  lower than B", with a margin) and :func:`judge_lowest` ("A is the lowest of several"). A
  single run has no interval, so it is *inconclusive* unless the quantity is deterministic (a
  parameter count); missing evidence is *not tested*, with the reason, never a crash.
* Ablations and controls: paired t-tests, Holm-corrected within a family (:func:`holm_contrasts`),
  worded *lower*, *higher*, *not distinguishable* or *not tested* (:func:`paired_verdict`); "is
  the reference the best variant?" (:func:`compare_with_reference`); and where a paired interval
  lies relative to 0 (:func:`side_of_zero`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from repro.report.formatting import fmt_qty
from repro.stats import (
    MeanCI,
    PairedDifference,
    holm_adjust,
    mean_ci,
    paired_by_key,
    samples_needed,
)

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED)
# A paired test, first minus second (NOT_TESTED when its p-value is undefined).
LOWER, HIGHER, NOT_DISTINGUISHABLE = "lower", "higher", "not distinguishable"
# "Is the reference the best variant?" (or NOT_DISTINGUISHABLE).
BEST, NOT_BEST = "best", "not best"
# Where a paired interval lies relative to 0.
BELOW, ABOVE, SPANS = "below", "above", "spans"


def significance_level(confidence: float) -> float:
    """α = 1 − c. A two-sided paired t-test rejects at α exactly when the (1 − α) t-interval of
    the difference excludes 0, so a test's verdict never contradicts the interval shown with it."""
    return 1.0 - confidence


def side_of_zero(low: float, high: float) -> str:
    """BELOW (high < 0), ABOVE (low > 0) or SPANS (anything else, an undefined interval too)."""
    return BELOW if high < 0 else ABOVE if low > 0 else SPANS


# ---- Published claims: reproduced / not reproduced / inconclusive / not tested ----


@dataclass(frozen=True)
class Sample:
    """Our measurements of one quantity, keyed by what pairs them across methods.

    Keys are seeds (or (nz, seed), or image indices): two samples are compared only on the keys
    they share. ``deterministic`` marks a quantity with no run-to-run noise (a parameter count),
    where one value is exact rather than a draw. ``missing`` says why there are no values.
    """

    values: Mapping[Hashable, float] = field(default_factory=dict)
    run_ids: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    deterministic: bool = False
    note: str = ""
    missing: str = ""
    scale: Mapping[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values.values()) / self.n if self.n else 0.0


@dataclass(frozen=True)
class Tolerance:
    """How close to a published number counts as a match: ± max(absolute, relative × |value|)."""

    relative: float = 0.0
    absolute: float = 0.0

    def half_width(self, reference: float) -> float:
        return max(self.absolute, self.relative * abs(reference))

    def describe(self, reference: float) -> str:
        parts = []
        if self.relative:
            parts.append(f"{self.relative:.0%}")
        if self.absolute or not parts:
            parts.append(f"{self.absolute:g}")
        return f"± {' or '.join(parts)} ({fmt_qty(self.half_width(reference))})"


@dataclass(frozen=True)
class Verdict:
    """A rule's outcome: the verdict, our number with its interval, and why."""

    verdict: str
    reason: str
    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    #: For an inconclusive verdict: about how many seeds at this scale would decide it, from the
    #: observed spread (:func:`repro.stats.samples_needed`); None when no number would.
    seeds_needed: int | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def _interval(low: float, high: float) -> str:
    return f"[{fmt_qty(low)}, {fmt_qty(high)}]"


def _needs(std: float, distance: float, confidence: float, spread: str) -> tuple[int | None, str]:
    """Seeds that would decide an inconclusive verdict, and the sentence the reason ends with."""
    n = samples_needed(std, distance, confidence)
    if n is None:
        return None, (
            f"; no number of seeds at this scale would decide it (the mean sits on the edge; "
            f"{spread} {fmt_qty(std)}): only a larger training scale (the paper profile) can"
        )
    return n, (
        f"; needs about {n} seeds at this scale to decide ({spread} {fmt_qty(std)}), "
        "or the paper profile"
    )


def _verdict(
    verdict: str,
    why: str,
    est: MeanCI | PairedDifference,
    low: float,
    high: float,
    needed: int | None = None,
) -> Verdict:
    return Verdict(verdict, why, est.mean, low, high, est.n, needed)


def not_tested(reason: str) -> Verdict:
    return Verdict(NOT_TESTED, reason)


def judge_match(
    sample: Sample,
    published: float,
    tolerance: Tolerance,
    confidence: float = 0.95,
    *,
    reference: str = "the published",
) -> Verdict:
    """Our interval inside the published value ± the claim's tolerance (reproduced), entirely
    outside it (not reproduced), or straddling its edge (inconclusive: too wide to tell)."""
    if sample.n == 0:
        return not_tested(sample.missing or "no measurement")
    values = list(sample.values.values())
    ci = mean_ci(values, confidence)
    # A deterministic quantity has no sampling error: its interval is the range of its values.
    low, high = (min(values), max(values)) if sample.deterministic else (ci.low, ci.high)
    half = tolerance.half_width(published)
    band_low, band_high = published - half, published + half
    band = f"{reference} {fmt_qty(published)} {tolerance.describe(published)}"
    if math.isnan(low):
        why = f"one run ({fmt_qty(ci.mean)}) gives no interval to compare with {band}"
        return _verdict(INCONCLUSIVE, why, ci, low, high)
    if low == high:
        what = f"our value {fmt_qty(low)}"
    elif sample.deterministic:
        what = f"every one of our {ci.n} values {_interval(low, high)}"
    else:
        what = f"our {confidence:.0%} CI {_interval(low, high)}"
    if band_low <= low and high <= band_high:
        return _verdict(REPRODUCED, f"{what} lies within {band}", ci, low, high)
    if high < band_low or low > band_high:
        return _verdict(NOT_REPRODUCED, f"{what} lies entirely outside {band}", ci, low, high)
    distance = min(abs(ci.mean - band_low), abs(ci.mean - band_high))
    needed, text = _needs(ci.std, distance, confidence, "seed-to-seed SD")
    why = f"{what} straddles the edge of {band}: too wide to decide{text}"
    return _verdict(INCONCLUSIVE, why, ci, low, high, needed)


def judge_less(
    a: Sample,
    b: Sample,
    margin: Tolerance,
    confidence: float = 0.95,
    *,
    names: tuple[str, str] = ("A", "B"),
) -> Verdict:
    """Is A lower than B? The paired difference A − B over their shared keys: its interval below
    0 reproduces the claim; one that rules out any improvement as large as the *margin* (the
    smallest difference worth the name) does not; anything between is inconclusive."""
    for s, name in ((a, names[0]), (b, names[1])):
        if s.n == 0:
            return not_tested(f"{name}: {s.missing or 'no measurement'}")
    d = paired_by_key(a.values, b.values, confidence, sort=False)
    if d is None:
        return not_tested(f"{names[0]} and {names[1]} share no seed (nothing to pair)")
    low, high = d.low, d.high
    if d.n == 1 and a.deterministic and b.deterministic:
        low = high = d.mean
    m = margin.half_width(b.mean)  # the smallest improvement that counts, relative to B's mean
    label = f"{names[0]} − {names[1]}"
    if math.isnan(low):
        why = f"one pair ({label} = {fmt_qty(d.mean)}) gives no interval; needs at least 2 seeds"
        return _verdict(INCONCLUSIVE, why, d, low, high)
    ci = f"{label} = {fmt_qty(d.mean)}, {confidence:.0%} CI {_interval(low, high)} over {d.n} pairs"
    side = side_of_zero(low, high)
    if side == BELOW:
        return _verdict(REPRODUCED, f"{ci}: entirely below 0", d, low, high)
    if low > -m:
        why = (
            f"{ci}: {names[0]} is significantly higher"
            if side == ABOVE
            else f"{ci}: rules out {names[0]} being lower by the margin {fmt_qty(m)} or more"
        )
        return _verdict(NOT_REPRODUCED, why, d, low, high)
    # Deciding needs the interval to clear 0 from below (reproduced) or -margin from above (not
    # reproduced): the nearer of the two edges, measured from the observed mean.
    needed, text = _needs(d.std, max(-d.mean, d.mean + m), confidence, "paired SD")
    why = f"{ci}: too wide — it holds both 0 and improvements larger than the margin {fmt_qty(m)}"
    return _verdict(INCONCLUSIVE, why + text, d, low, high, needed)


def judge_lowest(
    candidate: Sample,
    rivals: Mapping[str, Sample],
    margin: Tolerance,
    confidence: float = 0.95,
    *,
    name: str = "A",
) -> Verdict:
    """Is ``candidate`` lower than every rival? :func:`judge_less` against each at 1 − α/m
    (Bonferroni: the family stays at c); reproduced only if it beats every rival, not
    reproduced if any rival is not beaten by the margin."""
    if candidate.n == 0:
        return not_tested(f"{name}: {candidate.missing or 'no measurement'}")
    present = {k: s for k, s in rivals.items() if s.n}
    absent = sorted(set(rivals) - set(present))
    if not present:
        return not_tested(f"no rival of {name} was measured ({', '.join(absent)})")
    level = 1.0 - significance_level(confidence) / len(present)
    each = {k: judge_less(candidate, s, margin, level, names=(name, k)) for k, s in present.items()}
    # The numbers shown are the contrast with the strongest rival (the lowest mean).
    strongest = min(present, key=lambda k: present[k].mean)
    top = each[strongest]
    outcomes = [v.verdict for v in each.values()]
    if all(o == REPRODUCED for o in outcomes):
        verdict = REPRODUCED
        why = f"{name} is lower than every rival ({len(each)}, each at {level:.2%})"
    elif NOT_REPRODUCED in outcomes:
        verdict = NOT_REPRODUCED
        losers = [k for k, v in each.items() if v.verdict == NOT_REPRODUCED]
        why = f"{name} is not lower than {', '.join(losers)} by the margin"
    else:
        verdict = INCONCLUSIVE
        open_ = [k for k, v in each.items() if v.verdict != REPRODUCED]
        why = f"too wide to decide against {', '.join(open_)}"
    why += f"; strongest rival {strongest}: {top.reason}"
    if absent:
        why += f"; not measured: {', '.join(absent)}"
    needed = None
    if verdict == INCONCLUSIVE:  # every open contrast must be decided: the largest count
        counts = [v.seeds_needed for v in each.values() if v.verdict == INCONCLUSIVE]
        needed = None if None in counts else max(counts, default=None)
        if needed is not None and top.verdict != INCONCLUSIVE:
            why += f"; needs about {needed} seeds at this scale to decide, or the paper profile"
    return Verdict(verdict, why, top.mean, top.low, top.high, top.n, needed)


def combine(verdicts: Sequence[str]) -> str:
    """One claim over several settings: any *not reproduced* decides; all *reproduced* are needed.

    Settings that were not tested are left out (the claim's note says which); a claim none of
    whose settings was tested is *not tested*.
    """
    tested = [v for v in verdicts if v != NOT_TESTED]
    if not tested:
        return NOT_TESTED
    if NOT_REPRODUCED in tested:
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in tested):
        return REPRODUCED
    return INCONCLUSIVE


# ---- Ablations and controls: paired t-tests, Holm-corrected ----


def paired_verdict(mean_difference: float, p: float | None, alpha: float) -> str:
    """LOWER / HIGHER (first minus second, p < α), NOT_DISTINGUISHABLE, or NOT_TESTED (no
    p-value: one seed, or identical differences)."""
    if p is None or math.isnan(p):
        return NOT_TESTED
    if p < alpha:
        return LOWER if mean_difference < 0 else HIGHER
    return NOT_DISTINGUISHABLE


@dataclass(frozen=True)
class PairedTest:
    """A paired difference (first minus second) and its :func:`paired_verdict` at α = 1 − c."""

    difference: PairedDifference
    verdict: str


def paired_test(
    first: Mapping[Hashable, float], second: Mapping[Hashable, float], confidence: float
) -> PairedTest | None:
    """First − second over their shared keys, tested at α = :func:`significance_level`; None
    when they share no key."""
    d = paired_by_key(first, second, confidence)
    if d is None:
        return None
    return PairedTest(d, paired_verdict(d.mean, d.p_value, significance_level(confidence)))


@dataclass(frozen=True)
class Contrast:
    """A paired difference (negative: the first lower), its Holm-adjusted p and its verdict."""

    other: str
    difference: PairedDifference
    p_holm: float
    verdict: str  # paired_verdict of the difference at the family's α


def holm_contrasts(
    values: Mapping[str, Mapping[int, float]], reference: str, confidence: float
) -> list[Contrast]:
    """``reference`` − each other variant, paired over their shared seeds, Holm-adjusted together
    at α = :func:`significance_level`; a variant that shares no seed is left out."""
    ref = values.get(reference) or {}
    diffs = [
        (other, d)
        for other, vals in values.items()
        if other != reference and (d := paired_by_key(ref, vals, confidence)) is not None
    ]
    alpha = significance_level(confidence)
    adjusted = holm_adjust([d.p_value for _, d in diffs])
    return [
        Contrast(other, d, p, paired_verdict(d.mean, p, alpha))
        for (other, d), p in zip(diffs, adjusted, strict=True)
    ]


@dataclass(frozen=True)
class ReferenceComparison:
    """The outcome of "is ``reference`` the best variant?" and the numbers behind it."""

    reference: str
    outcome: str  # BEST | NOT_DISTINGUISHABLE | NOT_BEST
    means: dict[str, MeanCI]
    contrasts: list[Contrast]  # reference − each other variant
    lowest: str
    alpha: float

    def versus(self, other: str) -> Contrast | None:
        """``other`` − reference (the tables' direction: positive = higher than the reference)."""
        c = next((c for c in self.contrasts if c.other == other), None)
        if c is None:
            return None
        d = c.difference
        d = dataclasses.replace(d, mean=-d.mean, low=-d.high, high=-d.low)
        return Contrast(other, d, c.p_holm, paired_verdict(d.mean, c.p_holm, self.alpha))


def compare_with_reference(
    values: Mapping[str, Mapping[int, float]], reference: str, confidence: float = 0.95
) -> ReferenceComparison | None:
    """Is ``reference`` the best (lowest) variant, given per-seed values of every variant?

    ``values`` maps variant → {seed: value}; only seeds every compared pair shares are paired.
    Outcome rule: **best** when the reference is significantly lower than every other variant;
    **not best** when some other variant is significantly lower than the reference; otherwise
    **not distinguishable** (:func:`holm_contrasts`). None when the reference or every other
    variant has no values.
    """
    values = {k: v for k, v in values.items() if v}
    if reference not in values or len(values) < 2:
        return None
    means = {k: mean_ci(list(v.values()), confidence) for k, v in values.items()}
    contrasts = holm_contrasts(values, reference, confidence)
    if contrasts and all(c.verdict == LOWER for c in contrasts):
        outcome = BEST
    elif any(c.verdict == HIGHER for c in contrasts):
        outcome = NOT_BEST
    else:
        outcome = NOT_DISTINGUISHABLE
    lowest = min(means, key=lambda k: means[k].mean)
    alpha = significance_level(confidence)
    return ReferenceComparison(reference, outcome, means, contrasts, lowest, alpha)
