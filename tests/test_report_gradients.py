"""The decoder-gradient benchmark as a typed record (repro.report.loaders.load_benchmark), its
report section (repro.report.sections.gradients) and the claim measure that reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from repro.config import Params
from repro.report.claims.evidence import Evidence
from repro.report.claims.measures import measure_bench
from repro.report.loaders import BENCH_FILE, BenchResult, GradientBenchmark, load_benchmark
from repro.report.sections.gradients import GradientFinding, gradients_section
from repro.report.verdicts import Sample

CLAIMS = {
    "sources": {"gfe_paper": {"cite": "GFE paper"}},
    "claims": [
        {"id": "gfe-adjoint-not-necessary", "source": "gfe_paper", "where": "§3"},
        {"id": "other", "source": "gfe_paper"},
    ],
}
SHOWN = (
    {"id": "gfe-adjoint-not-necessary", "source": "gfe_paper", "where": "§3", "cite": "GFE paper"},
)


def result(mode: str | None, seconds: float | None, cosine: float | None, **more: Any) -> dict:
    row = {"seconds": seconds, "cosine_vs_backprop": cosine, **more}
    return row if mode is None else {"mode": mode, **row}


def bench_json(*rows: dict, **header: Any) -> dict:
    return {
        "benchmark": "gfe_decoder_gradients",
        "device": "cpu",
        "machine": "x86_64",
        "torch": "2.x",
        "settings": {"tau": 100.0, "batch": 16},
        "results": list(rows),
        **header,
    }


def test_the_benchmark_file_becomes_a_typed_record(tmp_path: Path) -> None:
    row = {
        "mode": "adjoint",
        "seconds": 3,
        "peak_rss_mib": 400.5,
        "rss_growth_mib": 0,
        "forward_nfe": 62,
        "cosine_vs_backprop": 0.99,
        "relative_difference_vs_backprop": 0.1,
        "grad_norm": 5.0,  # a field the report does not read is ignored
    }
    (tmp_path / BENCH_FILE).write_text(json.dumps(bench_json(row, {"seconds": 1.0})))
    assert load_benchmark(tmp_path) == (
        GradientBenchmark(
            benchmark="gfe_decoder_gradients",
            device="cpu",
            machine="x86_64",
            torch="2.x",
            settings=(("tau", 100.0), ("batch", 16)),
            results=(
                BenchResult("adjoint", 3.0, 400.5, 0.0, 62.0, 0.99, 0.1),
                BenchResult(None, 1.0, None, None, None, None, None),
            ),
        ),
        [],
    )
    minimal = GradientBenchmark.from_json({"results": [], "torch": 2.1, "settings": None})
    assert minimal == GradientBenchmark(None, None, None, "2.1", (), ())


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        ("{not json", "could not be read ("),
        ("[1, 2]", "has no `results` list"),
        ('{"results": {}}', "has no `results` list"),
        ('{"results": [], "settings": [1]}', "has `settings` that are not an object"),
        ('{"results": [3]}', "has a result that is not an object (3)"),
        ('{"results": [{"mode": 1}]}', "has a result whose `mode` is not a string (1)"),
        (
            '{"results": [{"mode": "adjoint", "seconds": "fast"}]}',
            "has `seconds` = 'fast' for mode 'adjoint', not a number",
        ),
        ('{"results": [{"mode": "x", "forward_nfe": true}]}', "has `forward_nfe` = True"),
    ],
)
def test_a_malformed_benchmark_is_a_warning_naming_the_file(
    tmp_path: Path, content: str, warning: str
) -> None:
    (tmp_path / BENCH_FILE).write_text(content)
    bench, warnings = load_benchmark(tmp_path)
    assert bench is None and len(warnings) == 1
    assert warnings[0].startswith(f"{BENCH_FILE} {warning}")
    assert warnings[0].endswith(": benchmark left out")


def test_no_benchmark_file_is_no_benchmark_and_no_warning(tmp_path: Path) -> None:
    assert load_benchmark(tmp_path) == (None, [])
    section = gradients_section(None, CLAIMS)
    assert section.claims == SHOWN and section.bench is None
    assert (section.present, section.rows, section.finding) == (False, (), None)


def test_rows_in_mode_order_and_the_approximate_gradient_finding() -> None:
    bench = GradientBenchmark.from_json(
        bench_json(
            result("approximate", 1.0, 0.5),  # measured twice: the last result counts
            result("zeta", 9.0, None),  # an unknown mode comes after the known ones
            result("adjoint", 10.0, 0.99, relative_difference_vs_backprop=0.2),
            result(None, 7.0, None),  # no mode: not a row
            result("backprop", 4.0, 1.0),
            result("approximate", 2.0, 0.9, relative_difference_vs_backprop=0.4),
        )
    )
    section = gradients_section(bench, CLAIMS)
    assert section.present and section.bench is bench and section.claims == SHOWN
    assert [(r.mode, r.seconds) for r in section.rows] == [
        ("backprop", 4.0),
        ("adjoint", 10.0),
        ("approximate", 2.0),
        ("zeta", 9.0),
    ]
    assert section.finding == GradientFinding(
        cosine=0.9, relative_difference=0.4, vs_backprop=2.0, vs_adjoint=5.0, adjoint_cosine=0.99
    )


@pytest.mark.parametrize(
    ("rows", "finding"),
    [
        ([result("backprop", 4.0, 1.0)], None),  # no approximate mode
        ([result("approximate", 2.0, None)], None),  # no cosine
        ([result("approximate", 0.0, 0.9)], None),  # no time
        ([result("approximate", None, 0.9)], None),
        (  # neither backprop nor the adjoint ran: no time ratio, no adjoint cosine
            [result("approximate", 2.0, 0.9)],
            GradientFinding(0.9, None, None, None, None),
        ),
        (  # the exact modes ran without a time
            [
                result("approximate", 2.0, 0.9),
                result("backprop", None, 1.0),
                result("adjoint", None, None),
            ],
            GradientFinding(0.9, None, None, None, None),
        ),
    ],
)
def test_the_finding_needs_an_approximate_cosine_and_time(
    rows: list[dict], finding: GradientFinding | None
) -> None:
    bench = GradientBenchmark.from_json(bench_json(*rows))
    assert gradients_section(bench, CLAIMS).finding == finding


def test_the_claim_measure_reads_the_typed_benchmark() -> None:
    ev = Evidence(Params())
    sel = {"mode": "approximate", "field": "cosine_vs_backprop"}
    assert measure_bench(sel, ev).missing.startswith("reports/bench_gfe_gradients.json is absent")
    ev = Evidence(
        Params(),
        bench=GradientBenchmark.from_json(
            bench_json(result("approximate", 2.0, None), result("approximate", 2.0, 0.93))
        ),
    )
    assert measure_bench(sel, ev) == Sample(
        values={"bench": 0.93}, files=("reports/bench_gfe_gradients.json",), deterministic=True
    )
    for missing in ({"mode": "adjoint", "field": "cosine_vs_backprop"}, {"mode": "approximate"}):
        assert measure_bench(missing, ev).missing == (
            f"benchmark has no {missing.get('field')} for mode {missing['mode']}"
        )
