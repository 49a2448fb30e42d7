"""`repro validate` sees ahead: a params file whose runs cannot fit in memory is refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from repro.capacity import BACKWARD_FACTOR, BYTES_PER_PARAMETER, check_fits, model_needs
from repro.config import ConfigError, load_params
from repro.config_runs import RunSpec
from repro.train_run import build_run_model
from tests.conftest import ROOT


def params(**model):
    p = load_params(ROOT / "params.yaml")
    return dataclasses.replace(p, model=dataclasses.replace(p.model, **model))


def test_the_estimate_counts_the_real_models_parameters_and_feature_maps():
    p = params(nz=[8])
    state, activations = model_needs(p)
    worst = max(
        p.train.methods,
        key=lambda m: sum(
            q.numel()
            for q in build_run_model(RunSpec("mnist", m, 8, 0), p, channels=1).parameters()
        ),
    )
    model = build_run_model(RunSpec("mnist", worst, 8, 0), p, channels=1)
    n = sum(q.numel() for q in model.parameters())
    assert state.bytes == n * BYTES_PER_PARAMETER and f"{n:,} parameters" in state.what
    maps = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: maps.append(o.numel()))
        for m in model.decoder.modules()
    ]
    with torch.no_grad():
        model.decoder(torch.zeros(p.train.batch_size, 8, 1, 1))
    for h in hooks:
        h.remove()
    assert activations.bytes == sum(maps) * 4 * BACKWARD_FACTOR


def test_the_need_is_the_workers_times_one_runs_parts():
    p = params()
    total, workers, free = check_fits(p, available=2**50)
    assert free == 2**50
    parts = model_needs(p)
    data = p.train.train_images * 32 * 32 + p.train.val_images * 32 * 32  # uint8, 1 channel
    assert total == workers * (sum(n.bytes for n in parts) + data)


def test_a_size_that_cannot_fit_is_refused_with_its_key_and_the_estimate():
    p = params(ngf=4096)
    with pytest.raises(ConfigError) as err:
        check_fits(p, available=2**30)
    message = str(err.value)
    assert message.startswith("model.ngf: the runs need at least ")
    assert "but cpu has 1.0 GiB available; lower model.ngf (or train.workers)" in message


@pytest.mark.stage
def test_repro_validate_refuses_a_model_too_large_for_the_machine(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  ngf: 16", "  ngf: 200000", 1)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "repro.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}: model.ngf: the runs need at least ")
    assert proc.stdout == ""
