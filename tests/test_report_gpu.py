"""The GPU-session section of the reports (repro/report/sections/gpu.py), without a session run.

A session directory is written by hand (session.json as :mod:`repro.session` lays it out, and the
repository's params.yaml as the params it ran), parsed into the typed records, and the section's
template is rendered from them. The dry run in tests/test_gpu_session.py covers the same code
on a real archive; these cover what a dry run never records (a GPU's memory, skipped runs, a
skipped study, a failed CUDA graph, no step times at all) and a malformed session.json.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.config import load_params
from repro.costs import StepTime, project
from repro.io import write_json
from repro.report.formatting import _environment
from repro.report.sections.gpu import (
    PAPER_PROFILE,
    Environment,
    GPUSection,
    ImportedSession,
    SessionPhase,
    SessionTrain,
    StackedRow,
    StepRow,
    StudyOutcome,
    VerdictRow,
    _verdict_rows,
    gpu_section,
    load_session,
)
from repro.session import SCHEMA
from tests.conftest import ROOT

ENVIRONMENT = {
    "torch": "2.x",
    "cuda": "12.4",
    "python": "3.11",
    "device": "cuda:0",
    "date": "2026-12-01 10:00 UTC",
    "code_fingerprint": "0123456789abcdef",
    "gpu": "NVIDIA H200",
    "gpu_memory_free_gib": 100.0,
    "gpu_memory_total_gib": 140.0,
    "capability": "9.0",
}
TIMES = [
    StepTime("gon", 32, "eager", 1, 64, 4.0, 30, "cuda"),
    StepTime("gon", 32, "graph", 1, 64, 2.0, 30, "cuda"),
    StepTime("ae", 32, "eager", 1, 64, 3.0, 30, "cuda"),
    StepTime("ae", 32, "graph", 1, 64, float("nan"), 0, "cuda", error="capture failed"),
    StepTime("gon", 32, "stacked", 1, 64, 5.0, 30, "cuda"),
    StepTime("gon", 32, "stacked", 2, 64, 6.0, 30, "cuda"),
    StepTime("gon", 32, "stacked", 4, 64, float("nan"), 0, "cuda", error="out of memory"),
]
SESSION = {
    "schema": SCHEMA,
    "dry_run": False,
    "budget_seconds": 3600.0,
    "wall_seconds": 3500.0,
    "phases": [
        {"name": "train", "status": "ok", "seconds": 3000.0, "detail": "a | b"},
        {"name": "studies", "status": "skipped", "seconds": 0.0, "detail": "no time"},
    ],
    "environment": ENVIRONMENT,
    "train": {"epochs": 40, "calibration": 0.5, "skipped": ["run-a", "run-b"], "runs": []},
    "studies": {
        "activation": {"status": "ok", "wall_seconds": 120.0},
        "multistep": {"status": "skipped", "reason": "needs 100 s"},
    },
    "step_times": [t.to_dict() for t in TIMES],
}


def _session_dir(path: Path, session: dict) -> Path:
    path.mkdir(parents=True)
    write_json(path / "session.json", session)
    shutil.copy(ROOT / "params.yaml", path / "params.yaml")
    return path


def _render(gpu: GPUSection) -> str:
    params = load_params(ROOT / "params.yaml")
    template = _environment().get_template("gpu.md.j2")
    return template.render(gpu=gpu, profile=params.profile, params=params)


def _section(runs_dir: Path, fig_dir: Path) -> GPUSection:
    return gpu_section(
        runs_dir, registry={"sources": {}, "claims": []}, verdicts=[], fig_dir=fig_dir
    )


def test_the_session_is_parsed_into_typed_records(tmp_path: Path) -> None:
    session = load_session(_session_dir(tmp_path / "gpu", SESSION))
    assert session == ImportedSession(
        dry_run=False,
        environment=Environment(
            "2.x",
            "12.4",
            "2026-12-01 10:00 UTC",
            "0123456789abcdef",
            "NVIDIA H200",
            None,
            100.0,
            140.0,
        ),  # fmt: skip
        phases=(
            SessionPhase("train", "ok", 3000.0, "a | b"),
            SessionPhase("studies", "skipped", 0.0, "no time"),
        ),
        budget_seconds=3600.0,
        wall_seconds=3500.0,
        train=SessionTrain(40, 0.5, ("run-a", "run-b")),
        studies=(
            StudyOutcome("activation", "ok", None, 120.0),
            StudyOutcome("multistep", "skipped", "needs 100 s", None),
        ),
        step_times=session.step_times,  # NaN != NaN: compared below
        params=load_params(ROOT / "params.yaml"),
    )
    assert repr(session.step_times) == repr(tuple(TIMES))  # repr: NaN reads as nan
    assert session.scale == "5 epochs over 50,000 images, 3 seeds, nz 32, on NVIDIA H200"
    assert session.seeds == 3 and session.calibration == 0.5
    (gon, ae) = session.steps
    assert gon == StepRow("GON", 32, 4.0, 2.0, None) and gon.speedup == 2.0
    assert (ae.method, ae.nz, ae.eager_ms, ae.error) == ("AE", 32, 3.0, "capture failed")
    assert math.isnan(ae.graph_ms) and math.isnan(ae.speedup)
    assert session.stacked == (StackedRow("GON", TIMES[4]), StackedRow("GON", TIMES[5]))


def test_the_gpu_reports_own_section_draws_and_renders_it(tmp_path: Path) -> None:
    runs = _session_dir(tmp_path / "runs" / "gpu", SESSION)
    section = _section(runs, tmp_path / "figures")
    session = load_session(runs)
    paper = project(load_params(PAPER_PROFILE), session.step_times, calibration=0.5)
    assert section == GPUSection(
        own=True, session=section.session, paper=section.paper, figure="figures/gpu_stacking.png"
    )
    assert repr(section.paper) == repr(paper)  # with the session's calibration; NaN: not timed
    assert section.present and section.verdicts == ()
    assert (tmp_path / "figures" / "gpu_stacking.png").read_bytes()[:4] == b"\x89PNG"
    md = _render(section)
    for line in (
        "Run by `bench/gpu_session.sh` on **NVIDIA H200**\n"
        "(torch 2.x, CUDA 12.4, 100 of 140 GiB free),\n"
        "2026-12-01 10:00 UTC, code fingerprint `0123456789ab`; imported with `repro gpu-import`.",
        "Wall time 3,500.0 s of a 3,600.0 s (1.00 h) budget.",
        "| train | ok | 3e+03 | a / b |",
        "session's runs: 0.5 (the cost model",
        "Skipped when the budget ran out: run-a, run-b.",
        "Study `activation`: **ok**, 120.0 s.\n- Study `multistep`: **skipped** (needs 100 s).\n",
        "One training step of batch 64 (`repro/steptime.py`)",
        "| GON | 32 | 4 | 2 | 2 |\n| AE | 32 | 3 | n/a | n/a (capture failed) |",
        "| GON | 32 | 1 | 5 | 200 |\n| GON | 32 | 2 | 6 | 333 |\n\n![Model-steps",
        "(0.5):",
    ):
        assert line in md, line
    assert "DRY RUN" not in md and "## At GPU scale" not in md


def test_a_session_without_runs_or_step_times_says_so(tmp_path: Path) -> None:
    environment = {k: ENVIRONMENT[k] for k in ("torch", "cuda", "date", "code_fingerprint")}
    bare = {
        "schema": SCHEMA,
        "dry_run": True,
        "environment": environment | {"gpu": None, "cpu": "a CPU, 2 logical CPUs"},
        "phases": [],
    }
    runs = _session_dir(tmp_path / "runs" / "gpu", bare)
    section = _section(runs, tmp_path / "figures")
    session = section.session
    assert session is not None and session.train is None and session.studies == ()
    assert session.calibration == 1.0 and session.steps == () and session.stacked == ()
    assert section == GPUSection(own=True, session=session)  # no projection, no figure
    assert not (tmp_path / "figures").exists()
    md = _render(section)
    assert "**DRY RUN.**" in md and "on **a CPU, 2 logical CPUs**\n(torch 2.x, CUDA 12.4)," in md
    assert "One training step of batch 64" in md and "The main runs got" not in md
    assert "N models of the same shape" not in md and "paper` profile would cost" not in md


def test_the_main_report_summarises_the_session_beside_its_own_verdicts(tmp_path: Path) -> None:
    _session_dir(tmp_path / "runs" / "gpu", SESSION | {"train": None})
    section = _section(tmp_path / "runs", tmp_path / "figures")
    assert not section.own and section.present and section.figure is None
    assert section.verdicts == () and section.session is not None
    md = _render(section)
    assert "## At GPU scale" in md and "[gpu/report.html](gpu/report.html)" in md
    assert "Scale: 5 epochs over 50,000 images, 3 seeds, nz 32, on NVIDIA H200.\n" in md
    assert "| GPU session (no epochs, 3 seeds) |" in md


def test_a_study_cut_off_by_a_failed_phase_is_not_finished(tmp_path: Path) -> None:
    # repro.session_runs.run_studies records a study's status only when it is skipped or done;
    # a studies phase that fails while one runs archives it without one.
    phases = [{"name": "studies", "status": "failed", "seconds": 5.0, "detail": "OOM"}]
    cut = {"activation": {"runs": 4, "predicted_seconds": 10.0}}
    runs = _session_dir(tmp_path / "runs" / "gpu", SESSION | {"phases": phases, "studies": cut})
    section = _section(tmp_path / "runs", tmp_path / "figures")  # the main report's summary
    assert section.present and section.session.studies == (
        StudyOutcome("activation", "not finished", None, None),
    )
    md = _render(_section(runs, tmp_path / "figures"))  # the GPU report's own
    assert "| studies | failed | 5 | OOM |" in md
    assert "- Study `activation`: **not finished**.\n" in md


def test_a_session_whose_environment_phase_failed_is_still_summarised(tmp_path: Path) -> None:
    # repro.gpu_session records the environment inside its phase: a failure leaves none.
    _session_dir(
        tmp_path / "runs" / "gpu", {k: v for k, v in SESSION.items() if k != "environment"}
    )
    section = _section(tmp_path / "runs", tmp_path / "figures")  # the main report's summary
    assert section.session.environment == Environment(*[None] * 8)
    md = _render(section)
    assert "Scale: 5 epochs over 50,000 images, 3 seeds, nz 32, on None.\n" in md


def test_without_a_session_the_section_says_how_to_make_one(tmp_path: Path) -> None:
    section = _section(tmp_path / "runs", tmp_path / "figures")
    assert section == GPUSection() and not section.present and section.paper is None
    assert "No GPU session has been imported yet." in _render(section)


def test_verdict_rows_keep_the_claims_either_report_tested() -> None:
    def result(id_: str, verdict: str, tested: bool, **claim: str) -> SimpleNamespace:
        return SimpleNamespace(id=id_, claim={"id": id_, **claim}, verdict=verdict, tested=tested)

    ours = [
        result("a", "reproduced", True, quantity="loss"),
        result("b", "not tested", False),
        result("c", "not tested", False),
        result("d", "reproduced", True),
    ]
    gpu = [result("a", "inconclusive", True), result("b", "reproduced", True)]
    gpu += [result("c", "not tested", False)]
    assert _verdict_rows(ours, gpu) == (
        VerdictRow("a", "loss", "reproduced", "inconclusive"),
        VerdictRow("b", "b", "not tested", "reproduced"),
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"environment": ["not", "an object"]}, "AttributeError"),
        ({"phases": [{"name": "train"}]}, "KeyError: 'status'"),
        ({"train": {"calibration": 0.5}}, "KeyError: 'epochs'"),
        ({"studies": {"activation": "ok"}}, "AttributeError"),
    ],
)
def test_a_malformed_session_is_refused_naming_its_file(
    tmp_path: Path, change: dict, why: str
) -> None:
    session_dir = _session_dir(tmp_path / "gpu", SESSION | change)
    with pytest.raises(ValueError, match="malformed session") as err:
        load_session(session_dir)
    assert str(err.value).startswith(f"{session_dir / 'session.json'}: malformed session (")
    assert why in str(err.value)
