"""`repro verify`: a reproduction is judged on its results, never on its provenance."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from repro.cli import main
from repro.verify import DIFFERS, IDENTICAL, WITHIN, compare_text, is_result_file, verify

METRICS = {
    "run": "mnist/gon-nz32-s0",
    "losses": {"batch": {"test": {"sse_per_image": 20.0, "mse_per_pixel": 0.02}}},
    "train_seconds": 12.5,
    "mlflow_run_id": "aaaa",
    "device": "cpu",
}
CLAIMS = (
    "claim_id,setting,unit,ours_mean,verdict,mlflow_run_ids\n"
    "gon-lower,mnist,SSE per image,20.0,inconclusive,aaaa\n"
    "gfe-cost,mnist,seconds,1.5,reproduced,bbbb\n"
)


def repo(tmp_path: Path) -> Path:
    """A git repository with one committed run and one report table."""
    run = tmp_path / "runs" / "main" / "mnist-nz32" / "gon-s0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "claims.csv").write_text(CLAIMS)
    (tmp_path / "reports" / "report.md").write_text("not compared\n")
    for cmd in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"],
    ):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    return tmp_path


def rewrite(root: Path, **losses: float) -> None:
    m = json.loads(json.dumps(METRICS))
    m["losses"]["batch"]["test"].update(losses)
    m.update(train_seconds=99.0, mlflow_run_id="zzzz", device="cuda")  # provenance only
    (root / "runs/main/mnist-nz32/gon-s0/metrics.json").write_text(json.dumps(m))


def test_a_rerun_that_changes_only_provenance_is_identical(tmp_path):
    root = repo(tmp_path)
    rewrite(root)
    (root / "reports/claims.csv").write_text(
        CLAIMS.replace("aaaa", "cccc").replace("1.5,reproduced,bbbb", "3.0,reproduced,dddd")
    )
    results = {r.path: r for r in verify(root)}
    assert set(results) == {"runs/main/mnist-nz32/gon-s0/metrics.json", "reports/claims.csv"}
    assert {r.status for r in results.values()} == {IDENTICAL}
    # run and 2 losses; claims.csv: 5 columns, then the timing row's identity and verdict
    assert results["runs/main/mnist-nz32/gon-s0/metrics.json"].compared == 3
    assert results["reports/claims.csv"].compared == 5 + 4


def test_a_small_numerical_change_is_within_tolerance_and_names_the_largest(tmp_path):
    root = repo(tmp_path)
    rewrite(root, sse_per_image=20.0 * (1 + 4e-6), mse_per_pixel=0.02 * (1 + 1e-6))
    (r,) = [r for r in verify(root) if r.path.endswith("metrics.json")]
    assert r.status == WITHIN
    assert r.largest.where == "losses.batch.test.sse_per_image"
    assert r.largest.relative == pytest.approx(4e-6, rel=1e-6)


def test_a_change_beyond_tolerance_or_in_a_verdict_differs(tmp_path):
    root = repo(tmp_path)
    rewrite(root, sse_per_image=21.0)
    (root / "reports/claims.csv").write_text(CLAIMS.replace("1.5,reproduced", "1.5,not reproduced"))
    results = {r.path: r for r in verify(root)}
    m = results["runs/main/mnist-nz32/gon-s0/metrics.json"]
    assert m.status == DIFFERS and m.largest.relative == pytest.approx(0.05)
    c = results["reports/claims.csv"]
    assert c.status == DIFFERS
    assert (c.largest.where, c.largest.committed, c.largest.now) == (
        "row 2 verdict",
        "reproduced",
        "not reproduced",
    )
    assert math.isinf(c.largest.relative)


def test_a_lost_file_or_key_differs():
    r = compare_text("a.json", '{"x": 1, "y": 2}', '{"x": 1}', rtol=1e-5, atol=0)
    assert (r.status, r.largest.where, r.largest.now) == (DIFFERS, "y", "(absent)")
    r = compare_text("a.csv", "x\n1\n2\n", "x\n1\n", rtol=1e-5, atol=0)
    assert (r.status, r.largest.where) == (DIFFERS, "rows")


def test_the_command_exits_non_zero_only_when_something_differs(tmp_path, monkeypatch, capsys):
    root = repo(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setattr("repro.cli.repo_root", lambda: root)
    rewrite(root)
    assert main(["verify"]) == 0
    assert capsys.readouterr().out.strip() == "2 results files against HEAD: 2 identical"
    rewrite(root, sse_per_image=30.0)
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("differs                   runs/main/mnist-nz32/gon-s0/metrics.json")
    assert out.rstrip().endswith("2 results files against HEAD: 1 identical, 1 differs")


@pytest.mark.parametrize(
    ("path", "compared"),
    [
        ("runs/main/mnist-nz32/gon-s0/metrics.json", True),
        ("runs/main/mnist-nz32.json", True),
        ("runs/efficiency/mnist/gfe-n1000-s0/curve.csv", True),
        ("reports/claims.csv", True),
        ("reports/metrics.json", True),
        ("runs/main/mnist-nz32/gon-s0/metrics.provenance.json", False),  # seconds, run ids
        ("runs/main/mnist-nz32/gon-s0/curve.provenance.csv", False),
        ("reports/benchmarks.json", False),  # machine-specific speed, not a result
        ("reports/plots/training.csv", False),  # a copy of the runs' own files
        ("reports/report.md", False),
    ],
)
def test_verify_compares_the_results_files_and_not_the_machine_specific_ones(path, compared):
    assert is_result_file(path) is compared
