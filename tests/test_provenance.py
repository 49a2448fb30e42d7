"""Provenance: the dirty flag tracks code and params, not the pipeline's own outputs."""

import subprocess
from pathlib import Path

from repro.provenance import _git_dirty


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_dirty_means_code_or_params_changed_not_that_a_stage_rewrote_its_outputs(tmp_path):
    _git(tmp_path, "init", "-q")
    for rel in (
        "repro/x.py",
        "params.yaml",
        "reports/report.md",
        "runs/m/metrics.json",
        "dvc.lock",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    (tmp_path / "reports/report.md").unlink()  # DVC removes a stage's outputs before running it
    (tmp_path / "runs/m/metrics.json").write_text("v2\n")
    (tmp_path / "dvc.lock").write_text("v2\n")
    assert not _git_dirty(tmp_path)
    (tmp_path / "params.yaml").write_text("v2\n")
    assert _git_dirty(tmp_path)
