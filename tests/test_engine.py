"""The group engine: a run trained inside a group equals the same run trained alone, bitwise.

"Alone" is the run in this process (one thread, as the tiny profile sets); "in a group" is the
same job in a worker process of a two-worker group, next to other runs. Same seed, same thread
count ⇒ the same weights, curves and held-out losses, whichever mode trained it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from repro.config import RunSpec
from repro.efficiency import efficiency_run
from repro.engine import Job, mode_of, resolve_workers, run_group
from repro.groups import main_run
from repro.io import load_torch
from repro.train import curve_schedule


def _root(tmp_path: Path, data_dir: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(data_dir.parent.parent / "data", root / "data")
    return root


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def group_params(tiny_params):
    return dataclasses.replace(
        tiny_params, train=dataclasses.replace(tiny_params.train, epochs=2, curve_points=4)
    )


@pytest.mark.stage
def test_main_runs_trained_in_a_worker_group_equal_the_same_runs_trained_alone(
    group_params, tiny_data_dir, tmp_path
):
    specs = [RunSpec("synthetic", m, 8, 0) for m in ("gon", "ae")]
    alone = _root(tmp_path, tiny_data_dir, "alone")
    together = _root(tmp_path, tiny_data_dir, "together")
    for spec in specs:
        main_run(spec, group_params, root=alone)
    jobs = [
        Job(s.name, main_run, {"spec": s, "params": group_params, "root": together}) for s in specs
    ]
    outcomes = list(run_group(jobs, workers=2))
    assert [o.error for o in outcomes] == [None, None]
    for spec in specs:
        a = load_torch(spec.model_dir(alone / "models") / "model.pt")
        b = load_torch(spec.model_dir(together / "models") / "model.pt")
        assert _same_state(a["state_dict"], b["state_dict"]), spec.name
        ra, rb = spec.run_dir(alone / "runs"), spec.run_dir(together / "runs")
        # the learning-curve points are the same whatever the group mode (the results file holds
        # no seconds: those are in its provenance sibling)
        ca, cb = pd.read_csv(ra / "curve.csv"), pd.read_csv(rb / "curve.csv")
        assert "train_seconds" not in ca
        pd.testing.assert_frame_equal(ca, cb, check_exact=True)
        result = next(o.result for o in outcomes if o.job.name == spec.name)
        assert (
            result["metrics"]["losses"]
            == main_run(spec, group_params, root=alone)["metrics"]["losses"]
        )


@pytest.mark.stage
def test_a_gfe_efficiency_run_in_a_worker_group_equals_it_alone(
    tiny_params, tiny_data_dir, tmp_path
):
    alone = _root(tmp_path, tiny_data_dir, "alone")
    together = _root(tmp_path, tiny_data_dir, "together")
    kwargs = {"train_size": 32, "seed": 0, "params": tiny_params}
    ref = efficiency_run("gfe_adaptive", root=alone, **kwargs)
    jobs = [
        Job(m, efficiency_run, {"method": m, "root": together, **kwargs})
        for m in ("gfe_adaptive", "ae")
    ]
    got = {o.job.name: o for o in run_group(jobs, workers=2)}
    assert got["gfe_adaptive"].error is None
    drop = ("train_seconds", "test_encode_seconds")
    strip = [{k: v for k, v in row.items() if k not in drop} for row in ref["curve"]]
    assert [
        {k: v for k, v in row.items() if k not in drop}
        for row in got["gfe_adaptive"].result["curve"]
    ] == strip
    name = "efficiency/synthetic/gfe_adaptive-n32-s0/model.pt"
    assert _same_state(
        load_torch(alone / "models" / name)["state_dict"],
        load_torch(together / "models" / name)["state_dict"],
    )


def _boom(x: int) -> int:
    if x == 2:
        raise ValueError("run 2 diverged")
    return x * 10


@pytest.mark.stage
@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_comes_back_as_its_error_and_the_others_finish(workers):
    jobs = [Job(str(i), _boom, {"x": i}, cost=float(i)) for i in (1, 2, 3)]
    outcomes = {o.job.name: o for o in run_group(jobs, workers=workers)}
    assert {k: o.result for k, o in outcomes.items()} == {"1": 10, "2": None, "3": 30}
    assert str(outcomes["2"].error) == "run 2 diverged"


def test_sequential_groups_run_the_longest_job_first():
    jobs = [Job(str(c), _boom, {"x": 1}, cost=c) for c in (1.0, 5.0, 3.0)]
    assert [o.job.name for o in run_group(jobs, workers=1)] == ["5.0", "3.0", "1.0"]


def test_workers_auto_is_one_per_core_on_cpu_and_one_on_a_gpu():
    cores = len(__import__("os").sched_getaffinity(0))
    assert resolve_workers(0, "cpu", 100) == cores
    assert resolve_workers(0, "cuda", 100) == 1
    assert resolve_workers(4, "cpu", 3) == 3  # never more workers than runs
    assert mode_of(1) == "sequential" and mode_of(2) == "workers"


def test_curve_schedule_is_log_spaced_from_zero_to_the_last_step():
    assert curve_schedule(3905, 12) == [0, 1, 2, 4, 10, 20, 43, 91, 193, 409, 868, 1841, 3905]
    assert curve_schedule(100, 0) == []
    assert curve_schedule(12, 1) == [0, 12]
