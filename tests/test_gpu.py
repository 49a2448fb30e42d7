"""What a CUDA device must reproduce: the CPU's losses, the eager step, the separate trainings.

Run on a lent GPU as ``pytest -m gpu tests/test_gpu.py`` (``bench/gpu_session.sh``), where torch
is installed but mlflow and dvc are not: this module imports only torch, pytest, the training
path of ``repro`` and ``tests/test_batched.py``'s helpers (checked by
``test_gpu_module_imports_without_mlflow_or_dvc``, the one test here that runs everywhere).
Every GPU test runs with TF32 off, cuDNN restricted to deterministic algorithms and without
autotuning (``torch.backends.cudnn.deterministic``/``benchmark``), and puts those switches back
afterwards.

**CPU vs GPU, 20 Adam steps (lr 1e-4), batches of 64 random images.** The same initial weights
and batches on both devices; per-step losses compared relative to the CPU's. PyTorch does not
promise equal results on CPU and GPU even with the same seeds (PyTorch docs, "Reproducibility",
https://pytorch.org/docs/stable/notes/randomness.html): the kernels sum in other orders, and a
float sum depends on its order (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
SIAM 2002, ch. 4). How far that rounding travels is a property of the method:

* AE (an encoder pass) is well conditioned. On this project's CPU, two float32 kernels (default
  vs ``channels_last`` convolutions) differ by at most 2.6e-7 relative per step over 20 steps,
  float32 vs float64 by 1e-7; in float64 the two kernels agree to 7e-16. Bounds: float32 1e-5 on
  the first step and 1e-4 on every step (``repro/batched.py`` measured AE float32 steps to 2e-7);
  float64 1e-9.
* GON is not. Its inner step starts at ``z₀ = 0`` (Bond-Taylor & Willcocks, "Gradient Origin
  Networks", ICLR 2021), so the first transposed convolution outputs its bias, the same value for
  every image and pixel: the first BatchNorm normalises an input of zero variance, and its output,
  zero in exact arithmetic, is the rounding error of the batch mean divided by ``√eps`` (Ioffe &
  Szegedy, ICML 2015; eps = 1e-5, a factor 316). ELU maps 0 to 0, so at initialisation (BatchNorm
  shift 0) the next layers again see constant inputs and multiply the noise by 316 each: float32
  noise of 1e-7 reaches the decoded image D(z₀). Measured on the CPU at these settings: the
  ``channels_last`` kernels move the *first* step's float32 loss by 2.7e-3 to 4.4e-3 (five data
  seeds) and later steps by up to 5.9e-3; float32 differs from float64 by up to 8.8e-3 per step.
  (``repro/batched.py``'s 7e-4 is for its smaller models, nz 8 and 4 filters.) A GPU's BatchNorm
  is another kernel, so float32 GON is held to 1e-2 on the first step and 2e-2 on every step.
  In float64 the same noise is 1e-16 and the first step agrees to 1e-15 across CPU kernels:
  bound 1e-9. Later float64 steps still drift (up to 3.1e-3 measured, bound 1e-2), through ELU's
  second derivative, which jumps at 0 (Clevert et al., ICLR 2016) exactly where those zero
  activations sit, and which GON's second-order outer gradient uses (with tanh or softplus the
  float64 drift is 1e-10 or less).

**CUDA graph == eager.** :func:`repro.gpu.graphed_training_step` replays a capture of
:func:`repro.step.training_step`; the reference is that very call, eager, with the same Adam
(``capturable=True``, as ``fit`` builds it when ``train.cuda_graphs`` is on). Same kernels in the
same order on the same device (PyTorch docs, "CUDA Graphs",
https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs), so losses are held to 1e-5
relative and every tensor to 1e-5 absolute after 10 steps, and Adam's step count must have
advanced once per replayed step. Adam built with ``capturable=False`` (``fit`` without graphs)
rounds differently; that is PyTorch's optimiser, not the graph, and is not compared here.

**Stacked == separate on the GPU.** :class:`repro.batched.StackedTrainer` against three single
trainings with the same seeds and batches, on the GPU, float32, 5 steps: the comparison and the
bounds of ``tests/test_batched.py`` (imported from there, so the two cannot drift apart):
first-step loss 1e-6 and per-step losses 2e-3 (GON) / 1e-6 (AE) relative; tensors within
``BOUNDS_F32`` × lr × steps, by kind (GON parameters 0.5, AE parameters and running variances
1e-2; BatchNorm-fed biases and AE running means 3.0, since those biases' gradient is rounding
noise that Adam turns into steps of about lr: Kingma & Ba, ICLR 2015, §2.1);
``num_batches_tracked`` exactly. GON's running statistics are held to what they do instead, the
validation loss of the trained models in both BatchNorm modes within 1e-3 (``EVAL_RTOL_F32``):
``BOUNDS_F32``'s 1.5 (running variances) and 3.0 (running means) were measured on one thread,
and this same comparison on the CPU with two threads already reaches 3.1 and 3.2 (the inner
pass's BatchNorm again), while the validation losses still agree to 2e-4.

**TF32** (PyTorch docs, "TensorFloat-32 (TF32) on Ampere (and later) devices",
https://pytorch.org/docs/stable/notes/cuda.html): ``train.tf32: true`` changes 20 GON steps'
losses by less than 1%, the tolerance the profiles state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from repro.encoders import build_model, gon_training_loss
from repro.evaluate import mean_mse_per_pixel
from repro.gpu import graphed_training_step
from repro.implicit import implicit_run
from repro.step import training_step
from repro.variational import variational_run
from tests.test_batched import BATCH as STACK_BATCH
from tests.test_batched import (
    BOUNDS_F32,
    EVAL_RTOL_F32,
    FIRST_LOSS_RTOL_F32,
    LOSS_RTOL_F32,
    LR,
    SEEDS,
    STEPS,
    _images,
    _kind,
    _models,
    _separate,
    _stacked,
)

ROOT = Path(__file__).resolve().parents[1]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BATCH = 64  # GON's batch size, and its inner_norm
CPU_GPU_STEPS = 20
GRAPH_STEPS = 10

# (first step, every step) relative tolerances of GPU against CPU losses; see the docstring.
CPU_GPU_RTOL = {
    ("gon", torch.float32): (1e-2, 2e-2),
    ("ae", torch.float32): (1e-5, 1e-4),
    ("gon", torch.float64): (1e-9, 1e-2),
    ("ae", torch.float64): (1e-9, 1e-9),
}
GRAPH_LOSS_RTOL = 1e-5
GRAPH_STATE_ATOL = 1e-5
TF32_LOSS_RTOL = 1e-2


@pytest.fixture
def tf32_off_deterministic_cudnn() -> Iterator[None]:
    """TF32 off, deterministic cuDNN without autotuning; the previous settings put back."""
    before = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        ) = before


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` (as ``fit`` sets on CPU), then as before."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def random_batches(n: int, seed: int = 1) -> torch.Tensor:
    """``n`` batches (n, 64, 1, 32, 32) of uniform noise in [0, 1), drawn on the CPU."""
    return torch.rand(n, BATCH, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def training_losses(
    method: str, batches: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """One model per call, built on the CPU after ``manual_seed(0)`` then moved; its per-step
    losses of :func:`repro.step.training_step` with Adam (lr 1e-4), as float64 on the CPU."""
    torch.manual_seed(0)
    model = build_model(method, nz=32, inner_norm=BATCH).to(device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for x in batches:
        x = x.to(device=device, dtype=dtype)
        losses.append(training_step(model, optimizer, x, gon_training_loss).detach())
    return torch.stack(losses).double().cpu()


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("method", ["gon", "ae"])
def test_gpu_training_losses_match_the_cpu_over_20_adam_steps(
    method, dtype, tf32_off_deterministic_cudnn
):
    batches = random_batches(CPU_GPU_STEPS)
    with deterministic_algorithms():
        cpu = training_losses(method, batches, torch.device("cpu"), dtype)
    gpu = training_losses(method, batches, torch.device("cuda"), dtype)

    assert torch.isfinite(cpu).all() and torch.isfinite(gpu).all(), (cpu, gpu)
    first_rtol, rtol = CPU_GPU_RTOL[(method, dtype)]
    torch.testing.assert_close(gpu[0], cpu[0], rtol=first_rtol, atol=0)
    torch.testing.assert_close(gpu, cpu, rtol=rtol, atol=0)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["gon", "ae", "ae_linear"])
def test_cuda_graph_step_equals_the_eager_step(method, tf32_off_deterministic_cudnn):
    batches = random_batches(GRAPH_STEPS).cuda()

    def train(graphed: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], set[float]]:
        torch.manual_seed(0)
        model = build_model(method, nz=32, inner_norm=BATCH).cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=True)
        if graphed:
            step = graphed_training_step(model, optimizer, batches[0].shape)
        else:

            def step(x: torch.Tensor) -> torch.Tensor:  # what the graph captured, run eagerly
                return training_step(model, optimizer, x, gon_training_loss, set_to_none=False)

        # The graph returns the same loss tensor at every replay: copy each step's value.
        losses = torch.stack([step(x).detach().clone() for x in batches]).double().cpu()
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        adam_steps = {float(s["step"]) for s in optimizer.state.values()}
        return losses, state, adam_steps

    eager_losses, eager, eager_steps = train(graphed=False)
    graph_losses, replayed, graph_steps = train(graphed=True)

    assert eager_steps == {float(GRAPH_STEPS)}
    assert graph_steps == {float(GRAPH_STEPS)}, "Adam's step count must advance once per replay"
    assert torch.isfinite(graph_losses).all(), graph_losses
    torch.testing.assert_close(graph_losses, eager_losses, rtol=GRAPH_LOSS_RTOL, atol=0)
    assert replayed.keys() == eager.keys()
    for name, value in eager.items():
        if not value.is_floating_point():  # BatchNorm's num_batches_tracked
            assert torch.equal(replayed[name], value), name
            continue
        torch.testing.assert_close(
            replayed[name].double(), value.double(), rtol=0, atol=GRAPH_STATE_ATOL, msg=name
        )


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["gon", "ae"])
def test_stacked_models_on_the_gpu_match_separate_gpu_trainings(
    method, tf32_off_deterministic_cudnn
):
    train_x = _images(64).cuda()
    models = [model.cuda() for model in _models(method, torch.float32)]
    ref_states, ref_losses = _separate(models, train_x, SEEDS, STEPS, torch.float32)
    states, losses = _stacked(models, train_x, SEEDS, STEPS, torch.float32)
    losses = losses.cpu()

    assert losses.shape == ref_losses.shape == (STEPS, len(SEEDS))
    assert torch.isfinite(losses).all(), losses
    torch.testing.assert_close(losses[0], ref_losses[0], rtol=FIRST_LOSS_RTOL_F32, atol=0)
    torch.testing.assert_close(losses, ref_losses, rtol=LOSS_RTOL_F32[method], atol=0)
    assert not torch.equal(losses[:, 0], losses[:, 1])  # the seeds differ: a real comparison

    unit = LR * STEPS
    for i, (expected, got) in enumerate(zip(ref_states, states, strict=True)):
        assert list(got) == list(expected)
        for key, value in expected.items():
            if key.endswith("num_batches_tracked"):
                assert torch.equal(got[key], value), (i, key)
                continue
            kind = _kind(key, expected)
            if method == "gon" and kind in ("running_mean", "running_var"):
                assert torch.isfinite(got[key]).all(), (i, key)
                continue  # held to what they do: the validation losses below
            bound = BOUNDS_F32[method][kind] * unit
            diff = (got[key] - value).abs().max().item()
            assert diff <= bound, f"seed {SEEDS[i]} {key}: |Δ| {diff:.2e} > {bound:.2e}"

    # The trained models behave the same: validation loss in both BatchNorm modes.
    val_x = _images(32, seed=7).cuda()
    for expected, got in zip(ref_states, states, strict=True):
        a, b = (build_model(method, nz=8, ngf=4, inner_norm=STACK_BATCH).cuda() for _ in range(2))
        a.load_state_dict(expected)
        b.load_state_dict(got)
        for bn_mode in ("running", "batch"):
            la = mean_mse_per_pixel(a, val_x, batch_size=32, bn_mode=bn_mode)
            lb = mean_mse_per_pixel(b, val_x, batch_size=32, bn_mode=bn_mode)
            assert lb == pytest.approx(la, rel=EVAL_RTOL_F32), bn_mode


@pytest.mark.gpu
@needs_cuda
def test_tf32_changes_gon_training_losses_by_less_than_one_percent(tf32_off_deterministic_cudnn):
    """The stated tolerance for `train.tf32: true`: 20 GON steps, per-step loss within 1%."""
    batches = random_batches(CPU_GPU_STEPS)
    exact = training_losses("gon", batches, torch.device("cuda"), torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    fast = training_losses("gon", batches, torch.device("cuda"), torch.float32)
    # the fixture turns TF32 off again
    assert torch.isfinite(fast).all(), fast
    torch.testing.assert_close(fast, exact, rtol=TF32_LOSS_RTOL, atol=0)


def _on(params, device: str):
    return dataclasses.replace(params, train=dataclasses.replace(params.train, device=device))


# The studies' own tolerance, GPU against CPU after their tiny runs (one epoch, 16 steps): the
# variational GON's inner step starts at z₀ = 0 like GON's, whose float32 losses drift by up
# to 2e-2 per step (CPU_GPU_RTOL), and a held-out bound sums that drift over the run.
STUDY_RTOL = 5e-2


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["vgon", "vae"])
def test_the_variational_study_trains_on_the_gpu_as_on_the_cpu(
    tiny_params, tiny_data_dir, method, tf32_off_deterministic_cudnn
):
    """``train.device`` moves the variational study's training, bounds and sampling to the GPU;
    its noise comes from CPU generators, so a seed draws the same ε on both devices."""
    root = tiny_data_dir.parents[1]
    cpu = variational_run(method, 0, _on(tiny_params, "cpu"), root)["metrics"]
    gpu = variational_run(method, 0, _on(tiny_params, "cuda"), root)["metrics"]
    for key, value in cpu["test"].items():
        assert gpu["test"][key] == pytest.approx(value, rel=STUDY_RTOL), key


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["gon", "ae"])
def test_the_implicit_study_trains_on_the_gpu_as_on_the_cpu(
    tiny_params, tiny_data_dir, tmp_path, method, tf32_off_deterministic_cudnn
):
    """``train.device`` moves the implicit study's SIREN training, encoding and rendering to the
    GPU; its held-out loss agrees with the CPU run's."""
    cpu = implicit_run(method, "synthetic", 0, _on(tiny_params, "cpu"), tmp_path)["metrics"]
    gpu = implicit_run(method, "synthetic", 0, _on(tiny_params, "cuda"), tmp_path)["metrics"]
    assert gpu["test"]["sse_per_image"] == pytest.approx(
        cpu["test"]["sse_per_image"], rel=STUDY_RTOL
    )


@pytest.mark.stage
def test_gpu_module_imports_without_mlflow_or_dvc():
    """A GPU machine has torch but neither mlflow nor dvc: collect and run this module's GPU
    tests with both made unimportable (CUDA hidden, so they skip: an import check, in seconds)."""
    code = "\n".join(
        [
            "import sys",
            "sys.modules['mlflow'] = None  # any `import mlflow...` now raises ImportError",
            "sys.modules['dvc'] = None",
            "import repro.encoders, repro.step, repro.gpu, repro.batched, repro.train",
            "import repro.groups, repro.engine, repro.data, repro.variational, repro.implicit",
            "import pytest",
            "sys.exit(pytest.main(",
            "    ['-q', '-m', 'gpu', 'tests/test_gpu.py', '-p', 'no:cacheprovider']",
            "))",
        ]
    )
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "skipped" in out or "passed" in out, out
