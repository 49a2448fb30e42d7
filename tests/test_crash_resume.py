"""A training group killed with SIGKILL anywhere resumes and ends bitwise where an unkilled one ends.

Each case runs the real group stage script (``pipelines/train.py``: GON, AE and linear-encoder AE
of one dataset × nz) in a study copy, pauses it at one point (mid-epoch, half-way through writing
a checkpoint, half-way through writing the final model) and sends it SIGKILL there: no handler,
no ``finally``, exactly what the OOM killer or a pulled plug does. The pause is the only thing the
driver adds; the write itself is the library's own ``atomic_write``. Then the unmodified stage
runs again, as the next ``dvc repro`` would, and every run's weights, final model, losses and
curves must equal those of a group never killed. The paused cases run the group in-process
(``train.workers: 1``) so the driver's pause reaches the training code; the last case kills a
group of worker processes (``train.workers: 2``) while they train.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from repro.config import load_params
from repro.io import load_torch
from tests.conftest import ROOT, shrink, stage_env, study_copy

RUN = Path("models/main/synthetic-nz8/gon-s0")  # model.pt, checkpoint.pt
RESULTS = Path("runs/main/synthetic-nz8/gon-s0")  # history.csv, curve.csv, metrics.json
ARGS = ["--dataset", "synthetic", "--nz", "8"]
RUNS = ("gon-s0", "ae-s0", "ae_linear-s0")  # the group: train.methods x train.seeds (tiny)
STEPS_PER_EPOCH = 4  # tiny profile: 128 images / batch 32

# Runs the stage in-process after arranging one pause; the test kills the process there.
DRIVER = r"""
import io, os, runpy, sys, time
from pathlib import Path

import torch
import repro.io
import repro.train as T

where, at = os.environ["PAUSE_WHERE"], int(os.environ["PAUSE_AT"])
marker = Path(os.environ["PAUSE_MARKER"])

def pause():
    marker.write_text(str(os.getpid()))
    time.sleep(600)  # the test sends SIGKILL long before this ends

if where == "step":  # inside the training step number `at` (1-based), before the update
    real_loss, calls = T.gon_training_loss, [0]
    def loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            pause()
        return real_loss(*args, **kwargs)
    T.gon_training_loss = loss
else:  # half-way through writing checkpoint.pt of epoch `at`, or model.pt
    real_save = T.save_torch
    def save_torch(path, obj, **kwargs):
        name = Path(path).name
        if (where == "checkpoint" and name == "checkpoint.pt" and obj["epoch"] == at) or (
            where == "model" and name == "model.pt"
        ):
            buf = io.BytesIO()
            torch.save(obj, buf)
            with repro.io.atomic_write(path, "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                fh.flush()
                pause()
        return real_save(path, obj, **kwargs)
    T.save_torch = save_torch

sys.path.insert(0, "pipelines")
sys.argv = ["pipelines/train.py", *sys.argv[1:]]
runpy.run_path("pipelines/train.py", run_name="__main__")
"""


def run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *cmd],
        cwd=cwd,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study copy with the tiny profile and its data, made by the real data stage."""
    root = tmp_path_factory.mktemp("study")
    p = shrink(load_params(ROOT / "params.yaml"))
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, curve_points=6, workers=1))
    study_copy(root, yaml.safe_dump(p.to_dict(), sort_keys=False))
    run(root, "pipelines/data.py", "--dataset", "synthetic")
    (root / "driver.py").write_text(DRIVER)
    return root


@pytest.fixture(scope="module")
def uninterrupted(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(template, root, dirs_exist_ok=True)
    run(root, "pipelines/train.py", *ARGS)
    return root


def kill_at(root: Path, where: str, at: int) -> None:
    """Start the stage through the driver, wait for its pause, SIGKILL it there."""
    marker = root / "paused"
    proc = subprocess.Popen(
        [sys.executable, "driver.py", *ARGS],
        cwd=root,
        env={**stage_env(), "PAUSE_WHERE": where, "PAUSE_AT": str(at), "PAUSE_MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the stage ended before its pause: {proc.stdout.read().decode()}")
        assert time.monotonic() < deadline, "the stage never reached its pause"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def rows(path: Path, drop: tuple[str, ...]) -> list[dict[str, str]]:
    """A CSV's rows without the wall-clock columns (the only thing a resume may change)."""
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(fh)]


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# (where, at, the checkpoint epoch left on disk at the kill)
KILLS = {
    "mid_epoch_1_no_checkpoint_yet": ("step", 2, None),
    "mid_epoch_2": ("step", STEPS_PER_EPOCH + 3, 1),
    "during_checkpoint_write_epoch_2": ("checkpoint", 2, 1),
    "during_final_model_write": ("model", 0, 3),
}


@pytest.mark.stage
@pytest.mark.parametrize("case", sorted(KILLS))
def test_sigkill_then_rerun_ends_bitwise_like_an_uninterrupted_run(
    case: str, template: Path, uninterrupted: Path, tmp_path: Path
):
    where, at, ckpt_epoch = KILLS[case]
    root = tmp_path / "study"
    shutil.copytree(template, root)
    kill_at(root, where, at)
    run_dir = root / RUN

    # What the kill left: the last complete checkpoint (or none), never a half-written file.
    assert not (run_dir / "model.pt").exists()
    if ckpt_epoch is None:
        assert not (run_dir / "checkpoint.pt").exists()
    else:
        assert load_torch(run_dir / "checkpoint.pt")["epoch"] == ckpt_epoch  # checksum verified
    partial = sorted(p.name for p in run_dir.glob(".*.tmp"))
    assert partial if where != "step" else not partial, partial

    proc = run(root, "pipelines/train.py", *ARGS)  # the next `dvc repro` of this stage
    if ckpt_epoch is not None:
        assert f"resuming after epoch {ckpt_epoch}" in proc.stderr
    assert not list(run_dir.glob(".*.tmp")), "the resumed stage left the partial write behind"
    assert_group_equal(root, uninterrupted)


def assert_group_equal(root: Path, reference_root: Path) -> None:
    """Every run of the group: weights, RNG states, history, curve and held-out losses bitwise."""
    for name in RUNS:
        models, ref_models = root / RUN.parent / name, reference_root / RUN.parent / name
        results, ref_results = root / RESULTS.parent / name, reference_root / RESULTS.parent / name
        resumed, reference = load_torch(models / "model.pt"), load_torch(ref_models / "model.pt")
        assert same_state(resumed["state_dict"], reference["state_dict"]), name
        assert resumed["config"] == reference["config"]
        final_ckpt = load_torch(models / "checkpoint.pt")
        reference_ckpt = load_torch(ref_models / "checkpoint.pt")
        assert same_state(final_ckpt["model"], reference_ckpt["model"])
        assert torch.equal(final_ckpt["torch_rng"], reference_ckpt["torch_rng"])
        assert torch.equal(final_ckpt["data_rng"], reference_ckpt["data_rng"])
        assert rows(results / "history.csv", ("seconds",)) == rows(
            ref_results / "history.csv", ("seconds",)
        )
        assert rows(results / "curve.csv", ("train_seconds",)) == rows(
            ref_results / "curve.csv", ("train_seconds",)
        )
        summary, ref_summary = resumed["summary"], reference["summary"]
        for key in ("final_train_mse_per_pixel", "final_val_mse_per_pixel", "epochs_completed"):
            assert summary[key] == ref_summary[key], key
        losses = json.loads((results / "metrics.json").read_text())["losses"]
        assert losses == json.loads((ref_results / "metrics.json").read_text())["losses"]


@pytest.mark.stage
def test_sigkill_of_a_worker_group_then_rerun_ends_bitwise_like_an_uninterrupted_group(
    template: Path, uninterrupted: Path, tmp_path: Path
):
    """Two worker processes train the group; the stage is killed once a run has a checkpoint.

    The workers die with it (``PR_SET_PDEATHSIG``: no orphan keeps writing), and the re-run —
    in-process this time, the mode must not matter — resumes every run to the same bits.
    """
    root = tmp_path / "study"
    shutil.copytree(template, root)
    params_path = root / "params.yaml"
    p = yaml.safe_load(params_path.read_text())
    p["train"]["workers"] = 2
    params_path.write_text(yaml.safe_dump(p, sort_keys=False))
    proc = subprocess.Popen(
        [sys.executable, "pipelines/train.py", *ARGS],
        cwd=root,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not any((root / RUN.parent / n / "checkpoint.pt").exists() for n in RUNS):
        assert proc.poll() is None, "the group ended before any checkpoint was written"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1.0)  # a surviving worker would write its next checkpoint within this
    left = {n: (root / RUN.parent / n / "checkpoint.pt") for n in RUNS}
    stamps = {n: p.stat().st_mtime_ns for n, p in left.items() if p.exists()}
    time.sleep(1.0)
    assert stamps == {n: p.stat().st_mtime_ns for n, p in left.items() if p.exists()}, (
        "a worker outlived its stage and kept writing checkpoints"
    )
    assert not (root / RESULTS.parent.parent / "synthetic-nz8.json").exists()
    p["train"]["workers"] = 1
    params_path.write_text(yaml.safe_dump(p, sort_keys=False))
    run(root, "pipelines/train.py", *ARGS)
    assert_group_equal(root, uninterrupted)


def test_a_resumed_run_reports_every_epoch_to_its_tracker(tiny_params, tiny_data_dir, tmp_path):
    """The run that finishes after a crash logs the checkpoint's epochs too: a whole curve."""
    from repro.config import RunSpec
    from repro.train import fit

    spec = RunSpec(dataset="synthetic", method="gon", nz=8, seed=0)
    first: list[dict] = []
    fit(
        spec,
        tiny_params,
        data_dir=tiny_data_dir,
        run_dir=tmp_path,
        on_epoch=first.append,
        stop_after_epochs=1,
    )
    resumed: list[dict] = []
    fit(spec, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path, on_epoch=resumed.append)
    assert [r["epoch"] for r in first] == [1]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert resumed[0] == first[0]
