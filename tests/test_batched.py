"""Training N models together (repro.batched) equals N separate trainings with the same seeds.

Two levels (see the tolerance section of :mod:`repro.batched`):

* float64, against a separate training loop written here exactly as ``fit``'s: every parameter,
  BatchNorm running statistic and ``num_batches_tracked`` and every step's loss, tightly. This
  shows the stacked step is the same computation (rounding is the only difference).
* float32, against :func:`repro.train.fit` itself: the same runs end where ``fit`` ends them,
  within the float32 bounds stated in :mod:`repro.batched`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
from pathlib import Path

import pytest
import torch

from repro.batched import (
    StackedTrainer,
    check_same_shape,
    data_orders,
    seeded_models,
    together_batches,
    train_runs_together,
    train_together,
)
from repro.config import RunSpec
from repro.encoders import build_model, gon_training_loss
from repro.evaluate import mean_mse_per_pixel
from repro.io import load_torch
from repro.train import fit, to_unit_float

SEEDS = (0, 1, 2)
BATCH = 16
LR = 1e-4
STEPS = 5

# float64: absolute tolerance on every tensor after STEPS steps (measured: AE 3e-11, GON 7e-9,
# both in the BatchNorm-fed convolution biases; other parameters agree to ~1e-12).
ATOL_F64 = 1e-7
LOSS_RTOL_F64 = 1e-9  # measured < 3e-12

# float32 against fit, in units of lr·steps (Adam moves a parameter by about lr per step), by kind
# of tensor. Measured here (4 steps): GON params 0.18, running_var 0.79, running_mean 0.64,
# BatchNorm-fed biases 1.75; AE params 1.4e-4, running_var 1.5e-4, running_mean 0.04, biases
# 0.25. The BatchNorm-fed biases (zero gradient in exact arithmetic) and the running means that
# absorb them follow rounding noise, anywhere in Adam's range: only a loose bound is possible.
BOUNDS_F32 = {
    "gon": {"param": 0.5, "running_var": 1.5, "bn_fed_bias": 3.0, "running_mean": 3.0},
    "ae": {"param": 1e-2, "running_var": 1e-2, "bn_fed_bias": 3.0, "running_mean": 3.0},
}
# Validation loss of the trained models, both BatchNorm modes (measured: GON 7e-5, AE 1.2e-5).
EVAL_RTOL_F32 = 1e-3
# Per-step losses in float32: the first step agrees to rounding (measured 1.5e-7); GON's later
# steps drift (measured up to 7e-4 by step 6), exactly as much as fit on 1 against 2 threads.
LOSS_RTOL_F32 = {"gon": 2e-3, "ae": 1e-6}
FIRST_LOSS_RTOL_F32 = 1e-6


@pytest.fixture(autouse=True)
def one_thread():
    """The float32 bounds were measured on one thread (as the tiny profile's fit runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n: int, seed: int = 3) -> torch.Tensor:
    """Smooth random uint8 images (N, 1, 32, 32): upsampled noise, cheap and deterministic."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 8, 8, generator=g)
    return (torch.nn.functional.interpolate(coarse, size=32, mode="bilinear") * 255).to(torch.uint8)


def _kind(key: str, state: dict[str, torch.Tensor]) -> str:
    """param | running_mean | running_var | bn_fed_bias (a conv bias whose next layer is BN)."""
    *module, index, leaf = key.split(".")
    if leaf in ("running_mean", "running_var"):
        return leaf
    following = ".".join([*module, str(int(index) + 1), "running_mean"]) if index.isdigit() else ""
    return "bn_fed_bias" if leaf == "bias" and following in state else "param"


def _separate(models, train_x, seeds, steps, dtype):
    """N ordinary trainings, each exactly as fit's loop does it; returns state_dicts and losses."""
    states, losses = [], []
    for model, seed in zip(models, seeds, strict=True):
        model = copy.deepcopy(model).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999))
        data_order = torch.Generator().manual_seed(seed)
        per_step = []
        while len(per_step) < steps:
            order = torch.randperm(train_x.shape[0], generator=data_order)
            for s in range(train_x.shape[0] // BATCH):
                if len(per_step) == steps:
                    break
                x = to_unit_float(train_x[order[s * BATCH : (s + 1) * BATCH]]).to(dtype)
                _, x_hat = model(x)
                loss = gon_training_loss(x_hat, x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                per_step.append(loss.item())
        states.append(model.state_dict())
        losses.append(per_step)
    return states, torch.tensor(losses, dtype=torch.float64).T  # (steps, N)


def _stacked(models, train_x, seeds, steps, dtype):
    trainer = StackedTrainer(models, lr=LR, betas=(0.9, 0.999))
    orders = data_orders(seeds)
    losses = []
    while len(losses) < steps:
        for x in together_batches(train_x, orders, BATCH):
            if len(losses) == steps:
                break
            losses.append(trainer.step(x.to(dtype)))
    return trainer.state_dicts(), torch.stack(losses).double()


def _models(method: str, dtype: torch.dtype, **opts):
    def build():
        return build_model(method, nz=8, ngf=4, inner_norm=BATCH, **opts).to(dtype)

    return seeded_models(SEEDS, build)


@pytest.mark.parametrize(
    ("method", "opts"),
    [
        ("gon", {}),
        ("gon", {"steps": 2, "step_size": 0.5, "learn_step_size": True}),
        ("ae", {}),
        ("ae_linear", {}),
    ],
    ids=["gon", "gon-2steps-learned", "ae", "ae_linear"],
)
def test_stacked_training_equals_separate_trainings_float64(method, opts):
    torch.manual_seed(123)  # what seeded_models must override
    train_x = _images(64)
    models = _models(method, torch.float64, **opts)
    before = copy.deepcopy(models[0].state_dict())
    ref_states, ref_losses = _separate(models, train_x, SEEDS, STEPS, torch.float64)
    states, losses = _stacked(models, train_x, SEEDS, STEPS, torch.float64)

    torch.testing.assert_close(losses, ref_losses, rtol=LOSS_RTOL_F64, atol=0)
    for i, (ref, got) in enumerate(zip(ref_states, states, strict=True)):
        assert list(got) == list(ref)
        for key, value in ref.items():
            if key.endswith("num_batches_tracked"):
                # GON's decoder runs steps + 1 times per training step (inner and outer passes).
                assert torch.equal(got[key], value), (i, key)
                continue
            torch.testing.assert_close(got[key], value, rtol=0, atol=ATOL_F64, msg=f"{i} {key}")
        # The running statistics moved (so the comparison above is not of untouched buffers).
        initial = models[i].state_dict()
        assert any(not torch.equal(v, initial[k]) for k, v in ref.items() if "running_var" in k)
    # Training together leaves the given models alone.
    assert all(torch.equal(v, before[k]) for k, v in models[0].state_dict().items())


def test_gon_running_statistics_see_the_inner_and_outer_passes():
    train_x = _images(64)
    models = _models("gon", torch.float64, steps=2)
    states, _ = _stacked(models, train_x, SEEDS, 3, torch.float64)
    for state in states:
        assert int(state["decoder.net.1.num_batches_tracked"]) == 3 * (2 + 1)
    assert not torch.equal(
        states[0]["decoder.net.1.running_var"], states[1]["decoder.net.1.running_var"]
    )


@pytest.mark.parametrize("method", ["gon", "ae"])
def test_per_step_losses_match_separate_trainings_float32(method):
    train_x = _images(64)
    models = _models(method, torch.float32)
    _, ref_losses = _separate(models, train_x, SEEDS, 8, torch.float32)
    states, losses = _stacked(models, train_x, SEEDS, 8, torch.float32)
    again, _ = _stacked(models, train_x, SEEDS, 8, torch.float32)  # bitwise reproducible
    assert all(torch.equal(a[k], b[k]) for a, b in zip(states, again, strict=True) for k in a)
    torch.testing.assert_close(losses[0], ref_losses[0], rtol=FIRST_LOSS_RTOL_F32, atol=0)
    torch.testing.assert_close(losses, ref_losses, rtol=LOSS_RTOL_F32[method], atol=0)
    assert not torch.equal(losses[:, 0], losses[:, 1])  # the seeds differ: a real comparison


def test_one_adam_over_stacked_tensors_is_n_independent_adams():
    torch.manual_seed(0)
    shape, n = (5, 3), 4
    init = torch.randn(n, *shape)
    grads = [torch.randn(n, *shape) * 10.0**k for k in range(-9, 1, 3)]  # tiny to large
    stacked = init.clone().requires_grad_()
    separate = [init[i].clone().requires_grad_() for i in range(n)]
    opt_stacked = torch.optim.Adam([stacked], lr=1e-3, betas=(0.9, 0.999))
    opt_separate = [torch.optim.Adam([p], lr=1e-3, betas=(0.9, 0.999)) for p in separate]
    for g in grads:
        stacked.grad = g.clone()
        opt_stacked.step()
        for i, (p, opt) in enumerate(zip(separate, opt_separate, strict=True)):
            p.grad = g[i].clone()
            opt.step()
    for i in range(n):
        assert torch.equal(stacked[i].detach(), separate[i].detach())


@pytest.mark.parametrize("method", ["gon", "ae"])
def test_trained_together_ends_where_fit_ends_float32(method, tiny_params, tiny_data_dir, tmp_path):
    params = dataclasses.replace(
        tiny_params, train=dataclasses.replace(tiny_params.train, epochs=1)
    )
    specs = [RunSpec("synthetic", method, 8, seed) for seed in SEEDS]
    ref, histories = [], []
    for spec in specs:
        run_dir = tmp_path / str(spec.seed)
        fit(spec, params, data_dir=tiny_data_dir, run_dir=run_dir)
        ref.append(load_torch(run_dir / "model.pt")["state_dict"])
        with open(run_dir / "history.csv") as fh:
            histories.append([float(r["train_mse_per_pixel"]) for r in csv.DictReader(fh)])
    train_x = load_torch(tiny_data_dir / "train.pt")["images"]
    result = train_runs_together(specs, params, train_x)

    steps = params.train.train_images // params.train.batch_size * params.train.epochs
    assert result.step_losses.shape == (steps, len(SEEDS))
    torch.testing.assert_close(
        result.epoch_losses.double().T,
        torch.tensor(histories, dtype=torch.float64),
        rtol=LOSS_RTOL_F32[method],
        atol=0,
    )
    unit = params.train.lr * steps
    for i, (expected, got) in enumerate(zip(ref, result.state_dicts, strict=True)):
        for key, value in expected.items():
            if key.endswith("num_batches_tracked"):
                assert torch.equal(got[key], value)
                continue
            bound = BOUNDS_F32[method][_kind(key, expected)] * unit
            diff = (got[key] - value).abs().max().item()
            assert diff <= bound, f"seed {i} {key}: |Δ| {diff:.2e} > {bound:.2e}"

    # The models behave the same: validation loss in both BatchNorm modes.
    val_x = load_torch(tiny_data_dir / "val.pt")["images"][:32]
    for expected, got in zip(ref, result.state_dicts, strict=True):
        a, b = (build_model(method, nz=8, ngf=4, inner_norm=32) for _ in range(2))
        a.load_state_dict(expected)
        b.load_state_dict(got)
        for bn_mode in ("running", "batch"):
            la = mean_mse_per_pixel(a, val_x, batch_size=32, bn_mode=bn_mode)
            lb = mean_mse_per_pixel(b, val_x, batch_size=32, bn_mode=bn_mode)
            assert lb == pytest.approx(la, rel=EVAL_RTOL_F32), bn_mode


@pytest.mark.parametrize(
    ("other", "words"),
    [
        ({"ngf": 8}, "modules"),
        ({"activation": "relu"}, "ReLU"),
        ({"nz": 4}, "modules"),
        ({"steps": 2}, "encoder"),
        ({"inner_norm": 32}, "encoder"),
        ({"method": "ae"}, "modules"),
    ],
    ids=["ngf", "activation", "nz", "gon-steps", "inner-norm", "method"],
)
def test_models_of_different_shape_are_refused_with_the_difference(other, words):
    base = {"method": "gon", "nz": 8, "ngf": 4, "inner_norm": 16, "activation": "elu"}
    a = build_model(**base)
    b = build_model(**(base | other))
    with pytest.raises(ValueError, match="differ in") as err:
        check_same_shape([a, b])
    assert words in str(err.value)
    with pytest.raises(ValueError, match="same architecture"):
        StackedTrainer([a, a, b])


def test_gfe_and_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="gon, ae and ae_linear"):
        check_same_shape([build_model("gfe", nz=8, ngf=4)])
    with pytest.raises(ValueError, match="at least one"):
        check_same_shape([])
    with pytest.raises(ValueError, match="seeds"):
        train_together(_models("ae", torch.float32), _images(32), [0], epochs=1, batch_size=16)


def test_state_dicts_load_into_ordinary_models_and_write_back(tmp_path: Path):
    models = _models("gon", torch.float32)
    trainer = StackedTrainer(models)
    trainer.step(torch.rand(len(SEEDS), BATCH, 1, 32, 32))
    fresh = _models("gon", torch.float32)
    trainer.write_back(fresh)
    for model, untrained, state in zip(fresh, models, trainer.state_dicts(), strict=True):
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        assert not torch.equal(model.decoder.net[0].weight, untrained.decoder.net[0].weight)
    with pytest.raises(ValueError, match="one batch per model"):
        trainer.step(torch.rand(2, BATCH, 1, 32, 32))
