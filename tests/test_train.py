"""Training: seeds, determinism, resume after a crash, the divergence guard."""

import csv

import pytest
import torch

from repro import train as train_mod
from repro.config import RunSpec
from repro.errors import DivergenceError
from repro.io import load_torch
from repro.train import fit

SPEC = RunSpec("synthetic", "gon", 8, 0)


def final_state(run_dir):
    return load_torch(run_dir / "model.pt")["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_writes_model_history_and_checkpoint(tiny_params, tiny_data_dir, tmp_path):
    summary = fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert int(rows[-1]["images_seen"]) == 3 * 128  # 4 full batches of 32 per epoch
    assert summary["n_params"] > 0 and (tmp_path / "run" / "checkpoint.pt").exists()
    assert float(rows[-1]["train_mse_per_pixel"]) < float(rows[0]["train_mse_per_pixel"])


def test_same_seed_gives_identical_weights_and_other_seeds_differ(
    tiny_params, tiny_data_dir, tmp_path
):
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "a")
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "b")
    fit(
        RunSpec("synthetic", "gon", 8, 1),
        tiny_params,
        data_dir=tiny_data_dir,
        run_dir=tmp_path / "c",
    )
    assert_same_weights(final_state(tmp_path / "a"), final_state(tmp_path / "b"))
    w_a, w_c = final_state(tmp_path / "a"), final_state(tmp_path / "c")
    assert any(not torch.equal(w_a[k], w_c[k]) for k in w_a)


@pytest.mark.parametrize("method", ["gon", "ae"])
def test_killed_after_an_epoch_and_resumed_ends_with_exactly_the_uninterrupted_weights(
    method, tiny_params, tiny_data_dir, tmp_path
):
    spec = RunSpec("synthetic", method, 8, 0)
    fit(spec, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "straight")
    # "crash" after epoch 1: the process ends, only the checkpoint remains
    fit(
        spec, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "resumed", stop_after_epochs=1
    )
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert load_torch(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    fit(spec, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "resumed")
    assert_same_weights(final_state(tmp_path / "straight"), final_state(tmp_path / "resumed"))
    assert (tmp_path / "straight" / "history.csv").read_text().count("\n") == (
        tmp_path / "resumed" / "history.csv"
    ).read_text().count("\n")


def test_a_checkpoint_from_other_params_is_not_resumed(tiny_params, tiny_data_dir, tmp_path):
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r", stop_after_epochs=1)
    import dataclasses

    other = dataclasses.replace(tiny_params, train=dataclasses.replace(tiny_params.train, lr=5e-4))
    fit(SPEC, other, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # started over, did not continue at 2
    assert load_torch(tmp_path / "r" / "model.pt")["config"]["train"]["lr"] == 5e-4


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tiny_params, tiny_data_dir, tmp_path, monkeypatch
):
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r", stop_after_epochs=1)
    good = load_torch(tmp_path / "r" / "checkpoint.pt")
    monkeypatch.setattr(
        train_mod, "gon_training_loss", lambda x_hat, x: (x_hat - x).sum() * float("nan")
    )
    with pytest.raises(
        DivergenceError, match=r"synthetic/gon-nz8-s0: non-finite training loss at epoch 2"
    ):
        fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    kept = load_torch(tmp_path / "r" / "checkpoint.pt")
    assert kept["epoch"] == 1
    assert_same_weights(kept["model"], good["model"])


def test_cuda_requested_without_a_gpu_is_an_error_not_a_silent_fallback():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="train.device"):
        train_mod.select_device("cuda")


def test_a_checkpoint_from_other_training_code_is_not_resumed(
    tiny_params, tiny_data_dir, tmp_path, monkeypatch
):
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r", stop_after_epochs=1)
    monkeypatch.setattr(train_mod, "code_fingerprint", lambda: "edited code")
    fit(SPEC, tiny_params, data_dir=tiny_data_dir, run_dir=tmp_path / "r")
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # started over


def test_tf32_is_set_deliberately_and_off_by_default():
    from repro.train import configure_torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        configure_torch(torch.device("cpu"), 0)
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32  # PyTorch's own default here is True
        configure_torch(torch.device("cpu"), 0, tf32=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        torch.use_deterministic_algorithms(False)


def test_cuda_graphs_on_a_cpu_run_is_refused_with_the_key():
    from repro.config import ConfigError, load_params, params_from_dict
    from tests.conftest import ROOT

    d = load_params(ROOT / "params.yaml").to_dict()
    d["train"]["cuda_graphs"] = True
    d["train"]["device"] = "cpu"
    with pytest.raises(ConfigError, match="train.cuda_graphs"):
        params_from_dict(d)


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_graph_capture_restore_puts_adam_back_in_the_same_tensors(resumed):
    """repro.gpu._restore after the warm-up: weights back, Adam's state back *in place*, zeroed
    where there was none. (A state Adam created inside the capture would be re-zeroed by every
    replay: each replayed step would be Adam's first.) One step after the restore must equal,
    bitwise, one step of an optimiser that never saw the warm-up."""
    import copy

    from repro.encoders import build_model, gon_training_loss
    from repro.gpu import _restore
    from repro.step import training_step

    x = torch.rand(4, 16, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = build_model("gon", nz=8, ngf=4)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    if resumed:  # a checkpoint's Adam state, as when fit resumes and then captures
        training_step(model, opt, x[0], gon_training_loss)
    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(ref_model.parameters(), 1e-3)
    ref_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict aliases tensors
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for xb in x[1:3]:  # the warm-up
        training_step(model, opt, xb, gon_training_loss)

    def state_tensors():
        return [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)]

    before = [id(t) for t in state_tensors()]
    _restore(model, opt, saved_model, saved_opt)
    assert [id(t) for t in state_tensors()] == before  # same tensors: a graph's addresses hold
    if not resumed:
        assert all(float(t.abs().max()) == 0 for t in state_tensors())
    training_step(model, opt, x[3], gon_training_loss)
    training_step(ref_model, ref_opt, x[3], gon_training_loss)
    for name, t in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name
    for a, b in zip(
        state_tensors(),
        [t for st in ref_opt.state.values() for t in st.values() if torch.is_tensor(t)],
        strict=True,
    ):
        assert torch.equal(a, b)


@pytest.mark.stage
@pytest.mark.parametrize(("given", "expected"), [(None, "AVX2"), ("AVX512_CORE", "AVX512_CORE")])
def test_onednn_is_capped_at_avx2_so_conv_results_do_not_depend_on_the_cpu(given, expected):
    """repro.runtime caps oneDNN's instruction set on import (before any convolution), unless the
    user chose one: the committed conv results then reproduce bitwise on AVX2 and AVX-512 CPUs."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if given is not None:
        env["ONEDNN_MAX_CPU_ISA"] = given
    code = "import os, repro.runtime; print(os.environ['ONEDNN_MAX_CPU_ISA'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected
