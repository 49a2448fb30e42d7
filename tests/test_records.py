"""Results apart from provenance (repro/records.py): a results file holds only what a
reproduction should reproduce; seconds, MLflow run ids and the device go to a sibling file that
git and DVC ignore, and come back when the file is read."""

from __future__ import annotations

import json
import subprocess

import pytest

from repro.records import DiagnosisMetrics, read_record
from repro.result_files import (
    is_provenance_file,
    merge_provenance,
    provenance_path,
    read_frame,
    read_rows,
    split_provenance,
    write_rows,
)
from tests.conftest import ROOT
from tests.factories import diagnosis_record

NESTED = {
    "run": "gon-s0",
    "train_seconds": 12.5,
    "mlflow_run_id": "abc",
    "final": {"test_sse": 3.0, "test_encode_seconds": 0.25},
    "runs": [{"loss": 1.0, "device": "cpu"}, {"loss": 2.0}],
}


def test_split_moves_every_provenance_key_at_any_depth_and_merge_restores_it():
    results, provenance = split_provenance(NESTED)
    assert results == {"run": "gon-s0", "final": {"test_sse": 3.0}, "runs": [{"loss": 1.0}, {"loss": 2.0}]}  # fmt: skip
    assert provenance == {
        "train_seconds": 12.5,
        "mlflow_run_id": "abc",
        "final": {"test_encode_seconds": 0.25},
        "runs": [{"device": "cpu"}, None],
    }
    assert merge_provenance(results, provenance) == NESTED
    assert split_provenance({"a": [1, 2]}) == ({"a": [1, 2]}, None)


def test_a_record_is_written_as_results_plus_a_sibling_and_read_back_whole(tmp_path):
    record = diagnosis_record(as_run_gap=0.5)
    path = tmp_path / "gon_mlp.json"
    record.write(path)
    assert provenance_path(path) == tmp_path / "gon_mlp.provenance.json"
    assert "mlflow_run_id" not in json.loads(path.read_text())
    assert json.loads(provenance_path(path).read_text()) == {"mlflow_run_id": "diag-run"}
    assert read_record(DiagnosisMetrics, path) == record
    provenance_path(path).unlink()  # a clean clone: results only, the facts unknown
    assert read_record(DiagnosisMetrics, path).mlflow_run_id is None


def test_csv_rows_keep_their_seconds_in_the_sibling_and_read_back_whole(tmp_path):
    rows = [
        {"step": 0, "train_seconds": 0.0, "loss": 1.5},
        {"step": 10, "train_seconds": 2.5, "loss": 0.5},
    ]
    path = tmp_path / "curve.csv"
    write_rows(path, rows, ("step", "train_seconds", "loss"))
    assert path.read_text().splitlines() == ["step,loss", "0,1.5", "10,0.5"]
    assert provenance_path(path).read_text().splitlines() == ["train_seconds", "0.0", "2.5"]
    assert [{k: float(v) for k, v in r.items()} for r in read_rows(path)] == rows
    assert read_frame(path).to_dict("records") == rows
    write_rows(path, rows[:1], ("step", "loss"))  # no provenance column: no stale sibling left
    assert not provenance_path(path).exists()


def test_a_sibling_that_does_not_fit_its_results_is_refused_by_name(tmp_path):
    path = tmp_path / "curve.csv"
    write_rows(path, [{"step": 0, "seconds": 1.0}], ("step", "seconds"))
    path.write_text("step\n0\n1\n")
    with pytest.raises(ValueError, match="curve.provenance.csv: 1 rows"):
        read_rows(path)


@pytest.mark.parametrize(
    ("path", "sibling"),
    [("a/metrics.json", False), ("a/curve.provenance.csv", True), ("a/provenance.md", False)],
)
def test_provenance_siblings_are_recognised(path, sibling):
    assert is_provenance_file(path) is sibling


def test_git_and_dvc_ignore_the_provenance_siblings_and_the_resume_checkpoint():
    names = ["runs/x/metrics.provenance.json", "runs/x/curve.provenance.csv"]
    ignored = subprocess.run(
        ["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == names
    dvcignore = (ROOT / ".dvcignore").read_text().split()
    assert {"*.provenance.json", "*.provenance.csv", "checkpoint.pt"} <= set(dvcignore)
