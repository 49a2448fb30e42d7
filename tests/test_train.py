"""Training: seeds, determinism, resume after a crash, the divergence guard."""

import csv

import pytest
import torch

from repro import train as train_mod
from repro.config import RunSpec
from repro.io import load_torch
from repro.train import DivergenceError, fit

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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tf32_changes_gon_training_losses_by_less_than_one_percent():
    """The stated tolerance for `train.tf32: true`: 20 GON steps, per-step loss within 1%."""
    from repro.encoders import build_model, gon_training_loss

    def losses(tf32: bool) -> torch.Tensor:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        torch.manual_seed(0)
        model = build_model("gon", nz=32, inner_norm=64).cuda()
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        x = torch.rand(20, 64, 1, 32, 32, generator=torch.Generator().manual_seed(1)).cuda()
        out = []
        for xb in x:
            _, x_hat = model(xb)
            loss = gon_training_loss(x_hat, xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.detach())
        return torch.stack(out).double().cpu()

    try:
        exact, fast = losses(False), losses(True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    assert torch.allclose(fast, exact, rtol=1e-2, atol=0), (fast / exact - 1).abs().max()


def test_cuda_graphs_on_a_cpu_run_is_refused_with_the_key():
    from repro.config import ConfigError, load_params, params_from_dict
    from tests.conftest import ROOT

    d = load_params(ROOT / "params.yaml").to_dict()
    d["train"]["cuda_graphs"] = True
    d["train"]["device"] = "cpu"
    with pytest.raises(ConfigError, match="train.cuda_graphs"):
        params_from_dict(d)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_step_equals_the_eager_step():
    """Same weights after 10 steps, replayed graph vs eager (float32, TF32 off): 1e-5."""
    from repro.encoders import build_model, gon_training_loss
    from repro.gpu import graphed_training_step

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    x = torch.rand(10, 64, 1, 32, 32, generator=torch.Generator().manual_seed(1)).cuda()

    def train(graphed: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model("gon", nz=32, inner_norm=64).cuda()
        opt = torch.optim.Adam(model.parameters(), 1e-4, capturable=graphed)
        step = graphed_training_step(model, opt, x[0].shape) if graphed else None
        for xb in x:
            if graphed:
                step(xb)
            else:
                _, x_hat = model(xb)
                loss = gon_training_loss(x_hat, xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    eager, replayed = train(False), train(True)
    for name in eager:
        assert torch.allclose(replayed[name].double(), eager[name].double(), atol=1e-5), name
