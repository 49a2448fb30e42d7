"""Faults a long study meets, and what the user sees: corrupt inputs and numerical blow-ups.

* A truncated, altered or foreign checkpoint, data split or metrics file is refused with its
  path and the fix; it is never resumed from, trained on or overwritten.
* Nothing from disk is unpickled freely (``weights_only=True``; a hostile pickle runs nothing).
* A NaN/Inf loss or gradient, an exploding loss, or a GFE flow over its evaluation cap stops
  the run with a clear error; the last good checkpoint stays bitwise intact; the stage's MLflow
  run is FAILED with the reason; the stage script exits with one ``error:`` line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import repro.train as T
from repro.config import Params, RunSpec, load_params
from repro.data import load_split
from repro.errors import ChecksumError, DivergenceError, FlowError
from repro.io import load_torch, save_torch, sha256_file
from repro.report.loaders import load_efficiency_runs, load_runs
from repro.tracking import tracked_run
from repro.train import CHECKPOINT, MODEL, fit
from tests.conftest import ROOT, shrink, stage_env, study_copy

SPEC = RunSpec(dataset="synthetic", method="gon", nz=8, seed=0)


def one_epoch(params: Params, data_dir: Path, run_dir: Path) -> Path:
    fit(SPEC, params, data_dir=data_dir, run_dir=run_dir, stop_after_epochs=1)
    return run_dir / CHECKPOINT


# --------------------------------------------------------------------------- corrupt checkpoints


def test_truncated_checkpoint_is_refused_with_its_path_and_kept(
    tiny_params, tiny_data_dir, tmp_path
):
    ckpt = one_epoch(tiny_params, tiny_data_dir, tmp_path / "r")
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = sha256_file(ckpt)
    with pytest.raises(ValueError) as err:
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    assert str(ckpt) in str(err.value) and "truncated or corrupt" in str(err.value)
    assert "delete it" in str(err.value)
    assert sha256_file(ckpt) == before, "the corrupt checkpoint was overwritten"
    assert not (tmp_path / "r" / MODEL).exists()


def test_checkpoint_with_an_altered_tensor_fails_its_checksum(tiny_params, tiny_data_dir, tmp_path):
    ckpt = one_epoch(tiny_params, tiny_data_dir, tmp_path / "r")
    blob = torch.load(ckpt, weights_only=True)
    name = next(iter(blob["model"]))
    blob["model"][name] = blob["model"][name] + 1e-3  # a plausible file: right keys and shapes
    torch.save(blob, ckpt)  # the stored checksum is now stale
    with pytest.raises(ValueError, match="content SHA-256 mismatch") as err:
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    assert str(ckpt) in str(err.value)


def test_checkpoint_of_another_shape_is_refused_by_name(tiny_params, tiny_data_dir, tmp_path):
    ckpt = one_epoch(tiny_params, tiny_data_dir, tmp_path / "r")
    blob = load_torch(ckpt)
    name = next(iter(blob["model"]))
    blob["model"][name] = torch.zeros(3, 3)  # written with a valid checksum: only shapes are off
    save_torch(ckpt, blob, checksum=True)
    with pytest.raises(ValueError, match="do not fit this run") as err:
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    assert str(ckpt) in str(err.value) and "delete it" in str(err.value)


def test_checkpoint_missing_its_parts_is_refused(tiny_params, tiny_data_dir, tmp_path):
    ckpt = tmp_path / "r" / CHECKPOINT
    save_torch(ckpt, {"epoch": 1, "model": {}}, checksum=True)
    with pytest.raises(ValueError, match="not a complete training checkpoint") as err:
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    assert str(ckpt) in str(err.value) and "'optimizer'" in str(err.value)


class Hostile:
    """Unpickling this would run a shell command: what a file from outside may hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tiny_params, tiny_data_dir, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "r" / CHECKPOINT
    ckpt.parent.mkdir()
    torch.save({"epoch": 1, "payload": Hostile(marker)}, ckpt)
    with pytest.raises(ValueError, match="refused it without running it") as err:
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    assert str(ckpt) in str(err.value)
    assert not marker.exists(), "the pickle ran its command"


def test_altered_model_file_is_refused_when_loaded(tiny_params, tiny_data_dir, tmp_path):
    run_dir = tmp_path / "r"
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=run_dir)
    blob = torch.load(run_dir / MODEL, weights_only=True)
    blob["summary"]["final_val_mse_per_pixel"] = 0.0  # a better number, typed in
    torch.save(blob, run_dir / MODEL)
    with pytest.raises(ValueError, match="content SHA-256 mismatch"):
        T.load_trained(run_dir, SPEC, tiny_params, channels=1)


# --------------------------------------------------------------------------- corrupt data / metrics


def with_manifest(data_dir: Path) -> Path:
    """Record the splits' SHA-256 beside ``data_dir`` as the data stage does."""
    files = {s: {"sha256": sha256_file(data_dir / f"{s}.pt")} for s in ("train", "val", "test")}
    manifest = data_dir.parent / f"{data_dir.name}.manifest.json"
    manifest.write_text(json.dumps({"files": files}))
    return manifest


def test_data_split_altered_after_the_data_stage_is_refused(tiny_data_dir):
    manifest = with_manifest(tiny_data_dir)
    load_split(tiny_data_dir, "train")  # as written: accepted
    path = tiny_data_dir / "train.pt"
    blob = load_torch(path)
    blob["images"][0, 0, 0, 0] ^= 1  # one pixel, one bit: same shapes and dtypes
    save_torch(path, blob)
    with pytest.raises(ChecksumError) as err:
        load_split(tiny_data_dir, "train")
    msg = str(err.value)
    assert str(path) in msg and str(manifest) in msg and "dvc repro data@synthetic" in msg


def test_truncated_data_split_is_refused_with_its_path(tiny_data_dir):
    with_manifest(tiny_data_dir)
    path = tiny_data_dir / "val.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError) as err:
        load_split(tiny_data_dir, "val")
    assert str(path) in str(err.value) and "dvc repro data@synthetic" in str(err.value)


def test_training_refuses_altered_data(tiny_params, tiny_data_dir, tmp_path):
    with_manifest(tiny_data_dir)
    path = tiny_data_dir / "train.pt"
    blob = load_torch(path)
    save_torch(path, {"images": blob["images"].flip(0), "labels": blob["labels"]})
    with pytest.raises(ChecksumError, match="altered or replaced"):
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    assert not (tmp_path / "r" / CHECKPOINT).exists()


def metrics_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "main" / "synthetic-nz8" / "gon-s0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(
        json.dumps({"dataset": "synthetic", "method": "gon", "nz": 8, "seed": 0})
    )
    return run / "metrics.json"


def test_truncated_metrics_file_is_refused_with_its_path(tmp_path):
    path = metrics_dir(tmp_path)
    path.write_text(path.read_text()[:20])
    with pytest.raises(ValueError, match="not valid JSON") as err:
        load_runs(tmp_path / "runs")
    assert str(path) in str(err.value) and "re-run its stage" in str(err.value)


def test_metrics_file_of_another_shape_is_refused_with_its_path(tmp_path):
    path = metrics_dir(tmp_path)
    path.write_text(json.dumps({"dataset": "synthetic", "method": "gon", "nz": "eight"}))
    with pytest.raises(ValueError, match="not a metrics file of this study") as err:
        load_runs(tmp_path / "runs")
    assert str(path) in str(err.value)


def test_efficiency_metrics_of_another_shape_are_refused_with_their_path(tmp_path):
    run = tmp_path / "efficiency" / "mnist" / "gfe_adaptive-n100-s0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"dataset": "mnist", "method": "gfe_adaptive"}))
    with pytest.raises(ValueError, match="not a metrics file of this study") as err:
        load_efficiency_runs(tmp_path / "efficiency")
    assert str(run / "metrics.json") in str(err.value) and "train_size" in str(err.value)


# --------------------------------------------------------------------------- numerical faults


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store for this test only."""
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("REPRO_TRACKING", raising=False)
    return uri


def tracked_fit(params: Params, data_dir: Path, run_dir: Path) -> None:
    cfg = dataclasses.replace(params.tracking, enabled=True)
    with tracked_run(cfg, stage="train@test", run_name=SPEC.name, params={}, experiment="faults"):
        fit(SPEC, params, data_dir=data_dir, run_dir=run_dir)


def the_run(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("faults").experiment_id])
    return run


def poison_after(monkeypatch, calls_before: int, make_bad) -> None:
    """From training step ``calls_before + 1`` on, the step's loss is ``make_bad(loss)``."""
    real, calls = T.gon_training_loss, [0]

    def loss(x_hat, x):
        calls[0] += 1
        value = real(x_hat, x)
        return make_bad(value) if calls[0] > calls_before else value

    monkeypatch.setattr(T, "gon_training_loss", loss)


@pytest.mark.parametrize(
    ("fault", "make_bad", "message"),
    [
        ("nan_loss", lambda v: v * float("nan"), "non-finite training loss at epoch 2, step 3"),
        ("inf_loss", lambda v: v * float("inf"), "non-finite training loss at epoch 2, step 3"),
        ("exploding_loss", lambda v: v * 1e9, "exceeds train.max_loss"),
    ],
)
def test_a_blow_up_in_epoch_2_fails_the_run_and_keeps_epoch_1(
    fault, make_bad, message, tiny_params, tiny_data_dir, tmp_path, store, monkeypatch
):
    run_dir = tmp_path / "r"
    ckpt = one_epoch(tiny_params, tiny_data_dir, run_dir)
    good = sha256_file(ckpt)
    # The resumed run starts at epoch 2, step 0; poison steps 1..3 of epoch 2. The CPU loop
    # checks steps 0, 50, ... and the last step of an epoch: step 3 finds it.
    poison_after(monkeypatch, 1, make_bad)
    with pytest.raises(DivergenceError) as err:
        tracked_fit(tiny_params, tiny_data_dir, run_dir)
    assert message in str(err.value)
    assert "the last good checkpoint" in str(err.value) and str(ckpt) in str(err.value)
    assert sha256_file(ckpt) == good and load_torch(ckpt)["epoch"] == 1
    assert not (run_dir / MODEL).exists()
    run = the_run(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("DivergenceError: ")
    assert str(err.value) in run.data.tags["error"]


def test_a_non_finite_gradient_is_caught_before_the_update(
    tiny_params, tiny_data_dir, tmp_path, store, monkeypatch
):
    """A finite loss with an infinite gradient (a bad custom op, an overflow in backward)."""
    real_build = T.build_run_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        first = next(model.parameters())
        first.register_hook(lambda g: g * float("inf"))
        return model

    monkeypatch.setattr(T, "build_run_model", build)
    with pytest.raises(DivergenceError, match="non-finite gradient at epoch 1, step 0") as err:
        tracked_fit(tiny_params, tiny_data_dir, tmp_path / "r")
    assert not (tmp_path / "r" / CHECKPOINT).exists()  # nothing good to keep yet
    assert "no checkpoint was written yet" in str(err.value)
    run = the_run(store)
    assert run.info.status == "FAILED" and "non-finite gradient" in run.data.tags["error"]
    assert str(err.value) in run.data.tags["error"]


def gfe_params(params: Params, max_nfe: int) -> Params:
    return dataclasses.replace(
        params,
        train=dataclasses.replace(params.train, methods=["gfe"]),
        gfe=dataclasses.replace(params.gfe, max_nfe=max_nfe),
    )


def test_a_gfe_flow_over_its_evaluation_cap_fails_the_run(
    tiny_params, tiny_data_dir, tmp_path, store
):
    params = gfe_params(tiny_params, max_nfe=3)
    spec = RunSpec(dataset="synthetic", method="gfe", nz=8, seed=0)
    cfg = dataclasses.replace(params.tracking, enabled=True)
    with pytest.raises(FlowError, match=r"more than 3 gradient evaluations \(gfe.max_nfe\)"):
        with tracked_run(
            cfg, stage="train@gfe", run_name=spec.name, params={}, experiment="faults"
        ):
            fit(spec, params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    run = the_run(store)
    assert run.info.status == "FAILED" and "gfe.max_nfe" in run.data.tags["error"]
    assert not (tmp_path / "r" / MODEL).exists()


@pytest.mark.stage
def test_the_stage_script_exits_with_one_error_line_and_a_failed_mlflow_run(tmp_path):
    """The real ``pipelines/efficiency.py``: a flow over its cap ends the stage, not in a
    traceback (one GFE run, so the stage's run has one nested run)."""
    pytest.importorskip("mlflow")
    root = tmp_path / "study"
    params = shrink(load_params(ROOT / "params.yaml"))
    eff = params.efficiency
    params = dataclasses.replace(
        params,
        efficiency=dataclasses.replace(
            eff, methods=["gfe"], train_sizes=eff.train_sizes[:1], seeds=eff.seeds[:1]
        ),
        convergence=dataclasses.replace(
            params.convergence, method="gfe", train_size=eff.train_sizes[0], seed=eff.seeds[0]
        ),
        gfe=dataclasses.replace(params.gfe, max_nfe=3),
        tracking=dataclasses.replace(params.tracking, enabled=True),
    )
    study_copy(root, yaml.safe_dump(params.to_dict(), sort_keys=False))
    env = stage_env(tracking=True)

    def stage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )

    data = stage("pipelines/data.py", "--dataset", "synthetic")
    assert data.returncode == 0, data.stderr
    proc = stage("pipelines/efficiency.py")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "gfe.max_nfe" in last, proc.stderr
    assert "Traceback" not in proc.stderr

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    # the stage's run and the model's nested run: both FAILED with the reason
    parent, child = sorted(
        (r for r in runs if r.data.tags.get("stage") == "efficiency"),
        key=lambda r: "mlflow.parentRunId" in r.data.tags,
    )
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    for run in (parent, child):
        assert run.info.status == "FAILED" and "gfe.max_nfe" in run.data.tags["error"]
