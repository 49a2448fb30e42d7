"""The report's speed section reads the bench/ outputs when present and says so when not.

Each file is parsed into typed records where it is read; these tests compare whole records,
so a field added, dropped or computed differently fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.io import write_json
from repro.report.bench_records import (
    BatchPoint,
    Benchmark,
    BenchmarkFile,
    CompileResult,
    ModelsPoint,
    PhaseRow,
    PhaseTimes,
    PipelineProfile,
    PipelineRun,
    PipelineSpeed,
    ScalingRun,
)
from repro.report.sections.speed import SpeedSection, speed_section

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


PIPELINE = {
    "machine": {"cpu": "test CPU", "cores": 2},
    "profile": {"dataset": "mnist", "epochs": 1, "train_images": 6400, "seeds": [0, 1]},
    "results": {
        "baseline": {
            "wall_seconds": 300.0,
            "stages": 19,
            "commit": "ce9a9e5",
            "model_steps": 900,
            "model_steps_per_second": 3.0,
            "num_threads": 2,
            "workers": "one process per model",
        },
        "ours": {
            "wall_seconds": 120.0,
            "stages": 2,
            "commit": "working tree",
            "model_steps": 900,
            "model_steps_per_second": 7.5,
            "num_threads": 1,
            "workers": 0,
        },
    },
}
CPU_SCALING = ScalingRun(
    device="cpu",
    machine="test CPU",
    threads=1,
    timing="median",
    images=3200,
    batch_size=(BatchPoint(16, 1600.0), BatchPoint(64, 6400.0)),
    models=(ModelsPoint(1, 2.0, 2.5, 0.8), ModelsPoint(2, 4.0, 5.0, 0.8)),
)


def test_speed_section_reads_every_bench_file_into_typed_records(tmp_path: Path) -> None:
    write_json(tmp_path / "benchmarks.json", BENCH)
    write_json(tmp_path / "scaling.json", SCALING)
    write_json(tmp_path / "pipeline_speed.json", PIPELINE)
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert warnings == []
    ours_phases = PhaseTimes(0.1, None, None, None, None, None, 30.1)
    base_phases = PhaseTimes(5.1, None, None, None, None, None, 35.1)
    assert section == SpeedSection(
        benchmarks=(Benchmark("gon_epoch", "cpu", 3.0, 4.5, "s", 1.5, ""),),
        machine="test CPU",
        torch="2.x",
        threads=2,
        setting=None,
        phases=(PhaseRow("cpu", ours_phases, base_phases),),
        compile=(
            CompileResult("cpu", "ae: compile", 33.0, "", 0.0),  # write_json sorts keys
            CompileResult("cpu", "gon: compile", None, "no double backward\nmore", 0.0),
        ),
        scaling=(CPU_SCALING,),
        figure="figures/scaling.png",
        pipeline=PipelineSpeed(
            baseline=PipelineRun(
                "baseline", "ce9a9e5", 19, 300.0, 900, 3.0, 2, "one process per model"
            ),
            ours=PipelineRun("ours", "working tree", 2, 120.0, 900, 7.5, 1, 0),
            machine="test CPU, 2 cores",
            profile=PipelineProfile("mnist", 1, 6400, (0, 1)),
        ),
    )
    assert section.phases[0].bound == 35.1 / (35.1 - 5.1 + 0.1)  # Amdahl: data cost as ours
    assert [c.result for c in section.compile] == [
        "33.0 ms per step",
        "fails: no double backward",
    ]
    assert section.pipeline is not None and section.pipeline.speedup == 2.5
    assert [r.name for r in section.pipeline.rows] == ["baseline", "ours"]
    assert (tmp_path / "figures" / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_speed_section_without_bench_outputs_is_empty_and_draws_nothing(tmp_path: Path) -> None:
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert section == SpeedSection() and warnings == []
    assert not (tmp_path / "figures").exists()


def test_cuda_scaling_is_drawn_beside_the_cpu_one(tmp_path: Path) -> None:
    write_json(tmp_path / "scaling.json", SCALING)
    cuda = {"device": "cuda", "threads": 1, "images_per_epoch": 6400}
    cuda["models"] = [{"n_models": 4, "batched_seconds": 1.0, "sequential_seconds": None}]
    write_json(tmp_path / "scaling_cuda.json", cuda)
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert warnings == [] and section.benchmarks == () and section.pipeline is None
    assert section.scaling == (
        CPU_SCALING,
        ScalingRun("cuda", None, 1, None, 6400, (), (ModelsPoint(4, 1.0, None, None),)),
    )
    assert section.figure == "figures/scaling.png"


def test_scaling_without_points_has_no_figure(tmp_path: Path) -> None:
    write_json(tmp_path / "scaling_cuda.json", {"device": "cuda", "machine": "a GPU"})
    section, _ = speed_section(tmp_path, tmp_path / "figures")
    assert section.scaling == (ScalingRun("cuda", "a GPU", None, None, 0, (), ()),)
    assert section.figure is None and not (tmp_path / "figures").exists()


def test_entries_the_tables_cannot_show_are_skipped(tmp_path: Path) -> None:
    bench = {
        "machine": "plain CPU",
        "threads": 4,
        "setting": "batch 64",
        "benchmarks": [
            {"name": "no baseline", "ours": 1.0},
            "not an entry",
            {"name": "no ratio", "ours": 2.0, "baseline": 3.0, "note": "n"},
        ],
        "profile": {"cpu": {"phases_ms_per_step": {"ours": {"data": 1.0}}}},
        "compile": {"cpu": {"load1_after": 0.9, "check": {"max_abs_diff": 0.3}}},
    }
    write_json(tmp_path / "benchmarks.json", bench)
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert warnings == []
    assert section == SpeedSection(
        benchmarks=(Benchmark("no ratio", "", 2.0, 3.0, "", 1.5, "n"),),
        machine="plain CPU",
        threads=4,
        setting="batch 64",
    )


def test_phase_bound_and_compile_drift() -> None:
    all_data = PhaseTimes(5.0, None, None, None, None, None, 5.0)
    assert PhaseRow("cpu", all_data, all_data).bound is None  # no arithmetic to keep
    drift = CompileResult("cpu", "gon: func", 49.75, "", 0.006058)
    assert drift.result == "49.8 ms per step (its first loss differs from eager by 0.61%)"
    assert CompileResult("cpu", "x", None, "", 0.0).result == "fails: "


def test_pipeline_speed_without_both_results_is_left_out(tmp_path: Path) -> None:
    write_json(tmp_path / "pipeline_speed.json", {"results": {"ours": PIPELINE["results"]["ours"]}})
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert section.pipeline is None and warnings == []


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("benchmarks.json", "{not json", "not valid JSON"),
        ("benchmarks.json", "[1, 2]", "ValueError: the file is not a JSON object"),
        ("benchmarks.json", '{"profile": {"cpu": [1]}}', "ValueError: cpu is not a JSON object"),
        ("benchmarks.json", '{"benchmarks": [{"ours": 1, "baseline": "x"}]}', "ValueError"),
        ("scaling.json", '{"models": [{"batched_seconds": 1.0}]}', "KeyError: 'n_models'"),
        ("pipeline_speed.json", '{"results": {"baseline": {}, "ours": {}}}', "KeyError"),
    ],
)
def test_a_malformed_bench_file_is_a_warning_naming_it_not_a_crash(
    tmp_path: Path, name: str, text: str, why: str
) -> None:
    (tmp_path / name).write_text(text)
    section, warnings = speed_section(tmp_path, tmp_path / "figures")
    assert section == SpeedSection()
    (warning,) = warnings
    assert warning.startswith(f"`{name}` could not be read ({tmp_path / name}: ")
    assert why in warning and warning.endswith("): left out")


def test_an_empty_bench_file_is_no_measurement(tmp_path: Path) -> None:
    for name in ("benchmarks.json", "scaling.json", "pipeline_speed.json"):
        (tmp_path / name).write_text("{}")
    assert speed_section(tmp_path, tmp_path / "figures") == (SpeedSection(), [])
    assert BenchmarkFile.parse({}) == BenchmarkFile()
