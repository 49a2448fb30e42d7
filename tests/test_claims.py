"""Claims registry and verdicts: every claim gets a verdict computed by its rule, never by hand.

The decision rules are checked on numbers small enough to verify by hand; the registry end to
end on synthetic metrics files written the way the pipeline writes them.
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
from factories import main_metrics

from repro.config import RunSpec, params_from_dict
from repro.report.claims.evaluate import CSV_COLUMNS, evaluate_claims, write_claims_csv
from repro.report.claims.evidence import ClaimsError, Evidence, collect_evidence
from repro.report.claims.registry import load_registry, validate_registry
from repro.report.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTED,
    REPRODUCED,
    Sample,
    Tolerance,
    combine,
    judge_less,
    judge_lowest,
    judge_match,
)

SEEDS = (0, 1, 2)


def sample(*values: float, deterministic: bool = False) -> Sample:
    return Sample(values=dict(enumerate(values)), deterministic=deterministic)


# --- judge_match: a published number ---------------------------------------------------------


def test_match_inside_the_tolerance_band_is_reproduced() -> None:
    v = judge_match(sample(0.99, 1.00, 1.01), 1.0, Tolerance(relative=0.1))
    assert v.verdict == REPRODUCED
    assert v.low > 0.9 and v.high < 1.1 and v.n == 3


def test_match_entirely_outside_the_band_is_not_reproduced() -> None:
    v = judge_match(sample(2.0, 2.01, 1.99), 1.0, Tolerance(relative=0.1))
    assert v.verdict == NOT_REPRODUCED and "entirely outside" in v.reason


def test_match_with_an_interval_wider_than_the_band_is_inconclusive() -> None:
    # mean 1.0, but three seeds this far apart give a t-interval of about ±1.2
    v = judge_match(sample(0.5, 1.0, 1.5), 1.0, Tolerance(relative=0.1))
    assert v.verdict == INCONCLUSIVE and "too wide" in v.reason


def test_one_noisy_run_has_no_interval_so_it_is_inconclusive() -> None:
    assert judge_match(sample(1.0), 1.0, Tolerance(relative=0.1)).verdict == INCONCLUSIVE


def test_a_deterministic_count_is_judged_on_its_values() -> None:
    exact = judge_match(sample(74321, 74321, deterministic=True), 74321, Tolerance(absolute=0))
    assert exact.verdict == REPRODUCED
    off = judge_match(sample(74322, deterministic=True), 74321, Tolerance(absolute=0))
    assert off.verdict == NOT_REPRODUCED


def test_no_measurement_is_not_tested_with_the_reason() -> None:
    v = judge_match(Sample(missing="runs/x/metrics.json is absent"), 1.0, Tolerance(relative=0.1))
    assert v.verdict == NOT_TESTED and "runs/x/metrics.json" in v.reason


# --- judge_less: "A is lower than B", paired -------------------------------------------------


def test_less_with_the_paired_interval_below_zero_is_reproduced() -> None:
    a, b = sample(9.0, 10.1, 11.0), sample(10.0, 11.0, 12.1)  # A lower by ~1 on every seed
    v = judge_less(a, b, Tolerance(relative=0.05))
    assert v.verdict == REPRODUCED
    assert v.high < 0 and math.isclose(v.mean, (-1.0 - 0.9 - 1.1) / 3)


def test_less_when_a_is_significantly_higher_is_not_reproduced() -> None:
    v = judge_less(sample(12.0, 13.1, 14.0), sample(10.0, 11.0, 12.1), Tolerance(relative=0.05))
    assert v.verdict == NOT_REPRODUCED and v.low > 0 and "significantly higher" in v.reason


def test_less_with_a_tight_interval_around_zero_rules_out_the_margin() -> None:
    # differences of ±0.01 on losses near 10: any gain is far below the 5% margin (0.5)
    v = judge_less(sample(10.01, 11.0, 11.99), sample(10.0, 11.01, 12.0), Tolerance(relative=0.05))
    assert v.low < 0 < v.high
    assert v.verdict == NOT_REPRODUCED and "margin" in v.reason


def test_less_with_a_wide_interval_is_inconclusive() -> None:
    v = judge_less(sample(5.0, 14.0, 10.0), sample(10.0, 11.0, 12.0), Tolerance(relative=0.05))
    assert v.low < -0.55 and v.high > 0
    assert v.verdict == INCONCLUSIVE and "too wide" in v.reason


def test_an_inconclusive_comparison_says_how_many_seeds_would_decide_it() -> None:
    # paired differences -2, -1, 0: mean -1, SD 1; with no margin the nearer edge is 0, at
    # distance 1, and t_{0.975, n-1} / sqrt(n) first drops below 1 at n = 7 (t tables)
    a, b = sample(0.0, 1.0, 2.0), sample(2.0, 2.0, 2.0)
    v = judge_less(a, b, Tolerance())
    assert v.verdict == INCONCLUSIVE and v.seeds_needed == 7
    assert "needs about 7 seeds at this scale" in v.reason and "paper profile" in v.reason
    # a decided comparison carries no estimate
    assert (
        judge_less(sample(9.0, 10.1, 11.0), sample(10.0, 11.0, 12.1), Tolerance()).seeds_needed
        is None
    )


def test_less_pairs_only_shared_keys_and_needs_one() -> None:
    a = Sample(values={0: 1.0, 1: 2.0})
    b = Sample(values={5: 1.0})
    assert judge_less(a, b, Tolerance(relative=0.05)).verdict == NOT_TESTED


# --- judge_lowest: "A is the lowest of several" ------------------------------------------------


def test_lowest_needs_every_rival_beaten() -> None:
    elu = sample(9.0, 10.0, 11.0)
    rivals = {"relu": sample(10.5, 11.4, 12.6), "tanh": sample(12.0, 13.1, 13.9)}
    assert judge_lowest(elu, rivals, Tolerance(relative=0.05)).verdict == REPRODUCED
    rivals["softplus"] = sample(8.0, 9.1, 9.9)  # lower than ELU on every seed
    v = judge_lowest(elu, rivals, Tolerance(relative=0.05))
    assert v.verdict == NOT_REPRODUCED and "softplus" in v.reason
    assert v.mean > 0  # the numbers shown are against the strongest rival


def test_lowest_widens_intervals_for_the_number_of_rivals() -> None:
    # One rival: A's lead is significant at 95%. With five identical rivals the Bonferroni
    # interval (99%) is wider and no longer excludes 0.
    a = sample(9.0, 9.3, 8.7)  # differences -1, -0.7, -1.3: t = 5.8 (t95 = 4.3, t99 = 9.9)
    b = sample(10.0, 10.0, 10.0)
    assert judge_less(a, b, Tolerance(relative=0.05)).verdict == REPRODUCED
    five = {f"r{i}": b for i in range(5)}
    assert judge_lowest(a, five, Tolerance(relative=0.05)).verdict == INCONCLUSIVE


def test_combining_settings() -> None:
    assert combine([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine([REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE]) == NOT_REPRODUCED
    assert combine([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([REPRODUCED, NOT_TESTED]) == REPRODUCED
    assert combine([NOT_TESTED, NOT_TESTED]) == NOT_TESTED


# --- the registry -----------------------------------------------------------------------------


def test_every_claim_has_a_source_and_a_rule() -> None:
    registry = load_registry()
    ids = [c["id"] for c in registry["claims"]]
    assert len(ids) == len(set(ids)) >= 20
    for c in registry["claims"]:
        assert c["source"] in registry["sources"], c["id"]
        assert c["rule"]["kind"] in ("match", "less", "lowest", "not_tested"), c["id"]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.pop("rule"), "`rule`"),
        (lambda c: c["rule"].update(kind="roughly"), "`rule.kind`"),
        (lambda c: c["rule"]["where"].update(measure="vibes"), "measure"),
        (lambda c: c["rule"].pop("margin"), "`rule.margin`"),
        (lambda c: c.update(source="blog"), "`source`"),
    ],
)
def test_a_malformed_claim_is_refused_naming_the_claim_and_key(edit, key) -> None:
    registry = copy.deepcopy(load_registry())
    claim = next(c for c in registry["claims"] if c["id"] == "gon-lower-loss-than-ae")
    edit(claim)
    with pytest.raises(ClaimsError, match="gon-lower-loss-than-ae") as err:
        validate_registry(registry)
    assert key in str(err.value)


# --- end to end on synthetic metrics files ---------------------------------------------------


PARAMS = params_from_dict(
    {
        "profile": "quick",
        "data": {"datasets": ["mnist"]},
        "train": {"methods": ["gon", "ae"], "seeds": list(SEEDS), "epochs": 500},
        "evaluate": {"headline_bn": "batch"},
        "report": {"confidence": 0.95, "convergence_threshold": 1.5},
        "efficiency": {"train_sizes": [100]},
        # The defaults would name datasets and sizes this profile does not list.
        "convergence": {"train_size": 100},
        "implicit": {"datasets": ["mnist"]},
        "studies": {"latent": {"datasets": ["mnist"]}},
    }
)


def write_main_run(runs: Path, method: str, seed: int, test_sse: float, **extra) -> None:
    spec = RunSpec("mnist", method, 64, seed)
    run = spec.run_dir(runs)
    losses = {
        bn: {
            s: {"sse_per_image": test_sse, "mse_per_pixel": test_sse / 1024}
            for s in ("val", "test")
        }
        for bn in ("batch", "running")
    }
    main_metrics(
        dataset="mnist",
        method=method,
        nz=64,
        seed=seed,
        n_params=1000 if method == "gon" else 2000,
        epochs=extra.get("epochs", 500),
        losses=losses,
        mlflow_run_id=f"id-{method}-{seed}",
    ).write(run / "metrics.json")


def verdicts_for(tmp_path: Path, gon: list[float], ae: list[float], **kw) -> dict:
    runs = tmp_path / "runs"
    for seed, (g, a) in enumerate(zip(gon, ae, strict=True)):
        write_main_run(runs, "gon", seed, g, **kw)
        write_main_run(runs, "ae", seed, a, **kw)
    ev = collect_evidence(runs, tmp_path / "reports", PARAMS)
    return {r.id: r for r in evaluate_claims(load_registry(), ev)}


@pytest.mark.parametrize(
    ("gon", "ae", "expected"),
    [
        ([8.0, 9.1, 10.0], [10.0, 11.0, 12.1], REPRODUCED),  # GON lower on every seed
        ([12.0, 13.1, 14.0], [10.0, 11.0, 12.1], NOT_REPRODUCED),  # GON higher on every seed
        ([5.0, 16.0, 10.0], [10.0, 11.0, 12.0], INCONCLUSIVE),  # too noisy to tell
    ],
)
def test_gon_lower_loss_claim_follows_synthetic_metrics(tmp_path, gon, ae, expected) -> None:
    result = verdicts_for(tmp_path, gon, ae)["gon-lower-loss-than-ae"]
    assert result.verdict == expected
    (setting,) = result.settings
    assert setting.setting == "MNIST"
    assert setting.run_ids == [f"id-gon-{s}" for s in SEEDS] + [f"id-ae-{s}" for s in SEEDS]


def test_published_number_below_its_training_scale_is_not_tested_but_shown(tmp_path) -> None:
    results = verdicts_for(tmp_path, [0.6, 0.61, 0.59], [1.0, 1.0, 1.0], epochs=2)
    t1 = results["repro-table1-mnist-nz64"]
    assert t1.verdict == NOT_TESTED
    assert (
        "too small" in t1.settings[0].verdict.reason
        and "epochs 2 < 500" in t1.settings[0].verdict.reason
    )
    assert math.isclose(t1.settings[0].verdict.mean, 0.6)


def test_published_number_at_its_scale_is_judged(tmp_path) -> None:
    # Table 1, MNIST nz 64: 0.59 ± 25%; our three seeds at 0.58-0.60 lie inside
    results = verdicts_for(tmp_path, [0.58, 0.59, 0.60], [1.0, 1.0, 1.0])
    assert results["repro-table1-mnist-nz64"].verdict == REPRODUCED
    assert results["repro-table1-mnist-nz128"].verdict == NOT_TESTED  # no nz 128 run


def test_missing_metrics_make_every_claim_not_tested_not_a_crash(tmp_path) -> None:
    ev = collect_evidence(tmp_path / "runs", tmp_path / "reports", PARAMS)
    results = evaluate_claims(load_registry(), ev)
    assert {r.verdict for r in results} == {NOT_TESTED}
    by_id = {r.id: r for r in results}
    assert (
        "bench_gfe_gradients.json" in by_id["gfe-adjoint-not-necessary"].settings[0].verdict.reason
    )
    assert "no main run" in by_id["gon-lower-loss-than-ae"].settings[0].verdict.reason


def test_a_deleted_metrics_file_drops_that_run_and_says_so(tmp_path) -> None:
    results = verdicts_for(tmp_path, [8.0, 9.1, 10.0], [10.0, 11.0, 12.1])
    assert results["gon-lower-loss-than-ae"].verdict == REPRODUCED
    for seed in SEEDS:
        (RunSpec("mnist", "ae", 64, seed).run_dir(tmp_path / "runs") / "metrics.json").unlink()
    ev = collect_evidence(tmp_path / "runs", tmp_path / "reports", PARAMS)
    again = {r.id: r for r in evaluate_claims(load_registry(), ev)}["gon-lower-loss-than-ae"]
    assert again.verdict == NOT_TESTED and "no main run" in again.settings[0].verdict.reason


def test_claims_csv_has_every_claim_with_source_and_verdict(tmp_path) -> None:
    results = evaluate_claims(load_registry(), Evidence(params=PARAMS))
    path = write_claims_csv(tmp_path / "claims.csv", results)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == CSV_COLUMNS
    assert {r["claim_id"] for r in rows} == {c["id"] for c in load_registry()["claims"]}
    assert all(r["source"] and r["verdict"] and r["claim_verdict"] for r in rows)
