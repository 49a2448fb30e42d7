"""Decision rules: how a measurement becomes *reproduced*, *not reproduced*, *inconclusive* or
*not tested*.

Why rules in code: a verdict typed by hand drifts from the numbers the moment a run changes.
Here each claim in ``claims.yaml`` names one of three rules, and the rule alone turns our
measurements into the verdict, with a one-sentence reason a reader can check by hand.

* :func:`judge_match` — a published **number**: is our 95% interval inside the published value ±
  the claim's tolerance (reproduced), entirely outside it (not reproduced), or straddling its
  edge (inconclusive: the interval is too wide to tell)?
* :func:`judge_less` — a published **comparison** "A is lower than B" on matched seeds (or images):
  the paired difference A − B. Its interval below 0 reproduces the claim; an interval that rules
  out any improvement as large as the claim's *margin* (the smallest difference worth the name)
  does not; anything between is inconclusive.
* :func:`judge_lowest` — "A is the lowest of several": :func:`judge_less` against each rival with
  Bonferroni-widened intervals (so the family is still at the stated confidence); reproduced only
  if A beats every rival, not reproduced if any rival is not beaten by the margin.

A single run has no interval, so it is *inconclusive* unless the quantity is deterministic
(a parameter count). Missing evidence is *not tested*, with the reason, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from repro.stats import mean_ci, paired_difference, samples_needed

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED)


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
        return f"± {' or '.join(parts)} ({_g(self.half_width(reference))})"


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


def _g(x: float) -> str:
    """Four significant figures; whole numbers of 10,000 or more in full (parameter counts)."""
    if abs(x) >= 1e4 and float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _interval(low: float, high: float) -> str:
    return f"[{_g(low)}, {_g(high)}]"


def _needs(std: float, distance: float, confidence: float, spread: str) -> tuple[int | None, str]:
    """Seeds that would decide an inconclusive verdict, and the sentence the reason ends with."""
    n = samples_needed(std, distance, confidence)
    if n is None:
        return None, (
            f"; no number of seeds at this scale would decide it (the mean sits on the edge; "
            f"{spread} {_g(std)}): only a larger training scale (the paper profile) can"
        )
    return n, (
        f"; needs about {n} seeds at this scale to decide ({spread} {_g(std)}), "
        "or the paper profile"
    )


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
    """Our mean's interval against the band published ± tolerance (see the module docstring)."""
    if sample.n == 0:
        return not_tested(sample.missing or "no measurement")
    values = list(sample.values.values())
    ci = mean_ci(values, confidence)
    # A deterministic quantity has no sampling error: its interval is the range of its values.
    low, high = (min(values), max(values)) if sample.deterministic else (ci.low, ci.high)
    half = tolerance.half_width(published)
    band_low, band_high = published - half, published + half
    band = f"{reference} {_g(published)} {tolerance.describe(published)}"
    if math.isnan(low):
        return Verdict(
            INCONCLUSIVE,
            f"one run ({_g(ci.mean)}) gives no interval to compare with {band}",
            ci.mean,
            low,
            high,
            ci.n,
        )
    if low == high:
        what = f"our value {_g(low)}"
    elif sample.deterministic:
        what = f"every one of our {ci.n} values {_interval(low, high)}"
    else:
        what = f"our {confidence:.0%} CI {_interval(low, high)}"
    if band_low <= low and high <= band_high:
        verdict, why = REPRODUCED, f"{what} lies within {band}"
    elif high < band_low or low > band_high:
        verdict, why = NOT_REPRODUCED, f"{what} lies entirely outside {band}"
    else:
        verdict, why = INCONCLUSIVE, f"{what} straddles the edge of {band}: too wide to decide"
        distance = min(abs(ci.mean - band_low), abs(ci.mean - band_high))
        needed, text = _needs(ci.std, distance, confidence, "seed-to-seed SD")
        return Verdict(verdict, why + text, ci.mean, low, high, ci.n, needed)
    return Verdict(verdict, why, ci.mean, low, high, ci.n)


def _margin(margin: Tolerance, b: Sample) -> float:
    """The smallest improvement that counts, in the measurement's unit (relative to B's mean)."""
    b_mean = sum(b.values.values()) / b.n if b.n else 0.0
    return margin.half_width(b_mean)


def judge_less(
    a: Sample,
    b: Sample,
    margin: Tolerance,
    confidence: float = 0.95,
    *,
    names: tuple[str, str] = ("A", "B"),
) -> Verdict:
    """Is A lower than B? The paired difference A − B over their shared keys."""
    for s, name in ((a, names[0]), (b, names[1])):
        if s.n == 0:
            return not_tested(f"{name}: {s.missing or 'no measurement'}")
    keys = [k for k in a.values if k in b.values]
    if not keys:
        return not_tested(f"{names[0]} and {names[1]} share no seed (nothing to pair)")
    d = paired_difference([a.values[k] for k in keys], [b.values[k] for k in keys], confidence)
    low, high = d.low, d.high
    if d.n == 1 and a.deterministic and b.deterministic:
        low = high = d.mean
    m = _margin(margin, b)
    label = f"{names[0]} − {names[1]}"
    if math.isnan(low):
        return Verdict(
            INCONCLUSIVE,
            f"one pair ({label} = {_g(d.mean)}) gives no interval; needs at least 2 seeds",
            d.mean,
            low,
            high,
            d.n,
        )
    ci = f"{label} = {_g(d.mean)}, {confidence:.0%} CI {_interval(low, high)} over {d.n} pairs"
    if high < 0:
        return Verdict(REPRODUCED, f"{ci}: entirely below 0", d.mean, low, high, d.n)
    if low > -m:
        why = (
            f"{ci}: {names[0]} is significantly higher"
            if low > 0
            else f"{ci}: rules out {names[0]} being lower by the margin {_g(m)} or more"
        )
        return Verdict(NOT_REPRODUCED, why, d.mean, low, high, d.n)
    # Deciding needs the interval to clear 0 from below (reproduced) or -margin from above (not
    # reproduced): the nearer of the two edges, measured from the observed mean.
    needed, text = _needs(d.std, max(-d.mean, d.mean + m), confidence, "paired SD")
    return Verdict(
        INCONCLUSIVE,
        f"{ci}: too wide — it holds both 0 and improvements larger than the margin {_g(m)}" + text,
        d.mean,
        low,
        high,
        d.n,
        needed,
    )


def judge_lowest(
    candidate: Sample,
    rivals: Mapping[str, Sample],
    margin: Tolerance,
    confidence: float = 0.95,
    *,
    name: str = "A",
) -> Verdict:
    """Is ``candidate`` lower than every rival? Bonferroni: each pair at 1 − (1 − c)/m."""
    if candidate.n == 0:
        return not_tested(f"{name}: {candidate.missing or 'no measurement'}")
    present = {k: s for k, s in rivals.items() if s.n}
    absent = sorted(set(rivals) - set(present))
    if not present:
        return not_tested(f"no rival of {name} was measured ({', '.join(absent)})")
    level = 1.0 - (1.0 - confidence) / len(present)
    each = {k: judge_less(candidate, s, margin, level, names=(name, k)) for k, s in present.items()}
    # The numbers shown are the contrast with the strongest rival (the lowest mean).
    strongest = min(present, key=lambda k: sum(present[k].values.values()) / present[k].n)
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
