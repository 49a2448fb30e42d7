"""End to end: the real `dvc repro` on a tiny profile, in a temporary copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.config import load_params
from tests.conftest import ROOT, shrink


def _copy_checkout(dest: Path) -> None:
    """Tracked files plus new, not-ignored ones: what a fresh clone of this working tree holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if (
            src.is_file()
            and not rel.startswith(("runs/", "reports/", "data/"))
            and rel != "dvc.lock"
        ):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_tracks_it_in_mlflow_and_a_second_repro_is_a_no_op(tmp_path):
    repo = tmp_path / "study"
    repo.mkdir()
    _copy_checkout(repo)
    params = shrink(load_params(ROOT / "params.yaml")).to_dict()
    params["tracking"]["enabled"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REPRO_TRACKING")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(repo)  # the stages run the copied checkout's code, not an installed one
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    first = dvc("repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    report = (repo / "reports" / "report.md").read_text()
    assert "tiny" in report
    for method in ("gon", "ae"):
        assert (repo / "runs" / "synthetic" / f"{method}-nz8-s0" / "metrics.json").is_file()
    assert (repo / "dvc.lock").is_file()
    for cell in ("activation/synthetic-elu", "multistep/synthetic-k2", "latent/synthetic-nz4"):
        assert (repo / "runs" / "studies" / cell / "metrics.json").is_file(), cell
        assert (repo / "runs" / "studies" / cell / "curves.csv").is_file(), cell

    second = dvc("repro")
    assert second.returncode == 0 and "up to date" in second.stdout, second.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    stages = {r.data.tags.get("stage") for r in runs}
    expected = {
        "data@synthetic",
        "train@synthetic-gon-8-0",
        "train@synthetic-ae-8-0",
        "evaluate@synthetic-gon-8-0",
        "evaluate@synthetic-ae-8-0",
        "report",
        "reference@synthetic",
        "efficiency@gfe_adaptive-64-0",
        "efficiency@ae-32-0",
        "convergence",
        "activation@elu",
        "activation@relu",
        "multistep@2",
        "latent@synthetic-4",
        "evaluate@synthetic-ae_linear-8-0",
    }
    assert expected <= stages, stages
    assert all(r.info.status == "FINISHED" for r in runs)
    train_run = next(r for r in runs if r.data.tags.get("stage") == "train@synthetic-gon-8-0")
    assert len(client.get_metric_history(train_run.info.run_id, "train_mse_per_pixel")) == 3
