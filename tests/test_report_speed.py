"""The report's speed section reads the bench/ outputs when present and says so when not."""

from __future__ import annotations

from pathlib import Path

from repro.io import write_json
from repro.report.sections.speed import speed_section

BENCH = {
    "machine": {"device_name": "test CPU"},
    "torch": "2.x",
    "threads": {"ours": 2},
    "benchmarks": [
        {
            "name": "gon_epoch",
            "device": "cpu",
            "ours": 3.0,
            "baseline": 4.5,
            "unit": "s",
            "ratio": 1.5,
        }
    ],
    "profile": {
        "cpu": {
            "phases_ms_per_step": {
                "ours": {"data": 0.1, "total": 30.1},
                "baseline": {"data": 5.1, "total": 35.1},
            }
        }
    },
    "compile": {
        "cpu": {
            "gon: compile": {"status": "error", "error": "no double backward\nmore"},
            "ae: compile": {"status": "ok", "ms_per_step": 33.0},
        }
    },
}
SCALING = {
    "device": "cpu",
    "machine": "test CPU",
    "threads": 1,
    "timing": "median",
    "images_per_epoch": 3200,
    "batch_size": [{"batch_size": b, "images_per_s": 100.0 * b} for b in (16, 64)],
    "models": [
        {"n_models": n, "batched_seconds": 2.0 * n, "sequential_seconds": 2.5 * n, "ratio": 0.8}
        for n in (1, 2)
    ],
}


def test_speed_section_reads_benchmarks_scaling_and_the_amdahl_bound(tmp_path: Path) -> None:
    write_json(tmp_path / "benchmarks.json", BENCH)
    write_json(tmp_path / "scaling.json", SCALING)
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert warnings == []
    (row,) = section["benchmarks"]
    assert row["ratio"] == 1.5 and section["machine"] == "test CPU" and section["threads"] == 2
    (phases,) = section["phases"]
    assert abs(phases["bound"] - 35.1 / 30.1) < 1e-12  # the original loop minus its data cost
    results = {c["variant"]: c["result"] for c in section["compile"]}
    assert results["gon: compile"] == "fails: no double backward"
    assert results["ae: compile"] == "33.0 ms per step"
    assert section["figure"] == "figures/scaling.png"
    assert (tmp_path / "figures" / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_speed_section_without_bench_outputs_has_no_rows_and_no_figure(tmp_path: Path) -> None:
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert section["benchmarks"] == [] and section["figure"] is None and warnings == []


def test_a_corrupt_benchmarks_file_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "benchmarks.json").write_text("{not json")
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert section["benchmarks"] == [] and "benchmarks.json" in warnings[0]
