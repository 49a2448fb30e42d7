"""Textbook checks of the seed statistics: expected values are worked out by hand here."""

from __future__ import annotations

import math

import pytest

from repro.stats import MeanCI, mean_ci, paired_difference, samples_needed

# Two-sided 95% Student-t quantiles t_{0.975, df} from printed tables.
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105}


def test_mean_ci_three_values_textbook() -> None:
    # [1, 2, 3]: mean 2, sample sd 1, CI = 2 ± 4.302652730 · 1/√3.
    ci = mean_ci([1.0, 2.0, 3.0])
    half = T975[2] / math.sqrt(3)
    assert ci.n == 3
    assert ci.mean == pytest.approx(2.0)
    assert ci.std == pytest.approx(1.0)
    assert ci.low == pytest.approx(2.0 - half, rel=1e-8)
    assert ci.high == pytest.approx(2.0 + half, rel=1e-8)
    assert ci.half_width == pytest.approx(half, rel=1e-8)


def test_mean_ci_five_values_textbook() -> None:
    # [2, 4, 4, 5, 5]: mean 4, deviations -2,0,0,1,1 → SS = 6, s = √(6/4), CI = 4 ± 2.776445105 · s/√5.
    ci = mean_ci([2, 4, 4, 5, 5])
    s = math.sqrt(6 / 4)
    assert ci.mean == pytest.approx(4.0)
    assert ci.std == pytest.approx(s)
    assert ci.high - ci.mean == pytest.approx(T975[4] * s / math.sqrt(5), rel=1e-8)


def test_mean_ci_other_confidence() -> None:
    # 90%: t_{0.95, 1} = 6.313751515; [0, 2]: mean 1, s = √2, CI = 1 ± 6.3137515 · √2/√2.
    ci = mean_ci([0.0, 2.0], confidence=0.90)
    assert ci.low == pytest.approx(1 - 6.313751515, rel=1e-8)
    assert ci.high == pytest.approx(1 + 6.313751515, rel=1e-8)


def test_mean_ci_single_value_has_no_interval() -> None:
    ci = mean_ci([3.5])
    assert ci.mean == 3.5 and ci.n == 1
    assert math.isnan(ci.low) and math.isnan(ci.high) and math.isnan(ci.std)
    assert ci.overlaps(mean_ci([1.0, 2.0])) is None


def test_mean_ci_constant_values_zero_width() -> None:
    ci = mean_ci([5.0, 5.0, 5.0])
    assert (ci.low, ci.mean, ci.high, ci.std) == (5.0, 5.0, 5.0, 0.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf"), 1.0]])
def test_mean_ci_rejects_bad_input(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        mean_ci(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_mean_ci_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], confidence)


def test_overlaps() -> None:
    a = MeanCI(mean=1, low=0, high=2, n=3, std=1)
    b = MeanCI(mean=3, low=2, high=4, n=3, std=1)
    c = MeanCI(mean=5, low=4.5, high=5.5, n=3, std=1)
    assert a.overlaps(b) and b.overlaps(a)
    assert not a.overlaps(c) and not c.overlaps(a)


def test_paired_difference_textbook() -> None:
    # a - b = [1, 2, 3]: mean 1 with the CI of [1, 2, 3] shifted; t = 2 / (1/√3) = 2√3 with
    # df 2, two-sided p = 2·(1 − F_t2(2√3)). For df 2, F(t) = 1/2 + t / (2√(2 + t²)), so
    # p = 1 − t/√(2 + t²) = 1 − 2√3/√14.
    a = [11.0, 12.0, 13.0]
    b = [10.0, 10.0, 10.0]
    d = paired_difference(a, b)
    half = T975[2] / math.sqrt(3)
    assert d.n == 3
    assert d.mean == pytest.approx(2.0)
    assert d.low == pytest.approx(2.0 - half, rel=1e-8)
    assert d.high == pytest.approx(2.0 + half, rel=1e-8)
    assert d.p_value == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-8)


def test_paired_difference_sign_and_degenerate_cases() -> None:
    d = paired_difference([10.0, 10.0, 10.0], [11.0, 12.0, 13.0])
    assert d.mean == pytest.approx(-2.0)
    assert d.low < d.mean < d.high  # n=3: the 95% interval still contains 0 (p ≈ 0.074)
    assert d.p_value == pytest.approx(paired_difference([11.0, 12.0, 13.0], [10.0] * 3).p_value)
    same_shift = paired_difference([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert same_shift.mean == pytest.approx(1.0) and math.isnan(same_shift.p_value)
    single = paired_difference([2.0], [1.0])
    assert single.mean == 1.0 and math.isnan(single.p_value) and math.isnan(single.low)
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def test_samples_needed_is_the_first_n_whose_t_interval_is_narrow_enough():
    # t_{0.975, 5} / sqrt(6) = 1.0496 > 1 and t_{0.975, 6} / sqrt(7) = 0.9249 < 1 (t tables)
    assert samples_needed(1.0, 1.0, 0.95) == 7
    # twice the spread needs the interval halved: t_{0.975, n-1} / sqrt(n) < 0.5 first at n = 18
    assert samples_needed(2.0, 1.0, 0.95) == 18
    assert samples_needed(0.0, 1.0) == 2  # no spread: any interval is a point
    assert samples_needed(1.0, 0.0) is None  # a mean on the edge is never decided
    assert samples_needed(float("nan"), 1.0) is None  # one seed: no spread to plan with


def test_mean_or_none_is_the_mean_and_none_for_no_values():
    from repro.stats import mean_or_none

    assert mean_or_none([1.0, 2.0, 6.0]) == 3.0
    assert mean_or_none([]) is None
