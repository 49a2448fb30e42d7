"""The implicit study (repro.implicit): the SIREN of Implicit-GON.py, GON's latent on it, the
super-resolution metric, and a run that writes its record."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from repro import implicit
from repro.data import load_split
from repro.encoders import (
    ARCHITECTURE_REGISTRY,
    AmortisedEncoder,
    GradientOriginEncoder,
    build_model,
)
from repro.errors import DivergenceError
from repro.implicit import (
    bicubic_upsample,
    downsample,
    encode,
    gaussian_samples,
    image_grid,
    implicit_model,
    implicit_run,
    super_resolution_sse,
)
from repro.io import load_torch
from repro.models import (
    SIREN_OMEGA0,
    ConvEncoder,
    SineLayer,
    SirenDecoder,
    count_parameters,
    pixel_grid,
)
from repro.records import ImplicitMetrics, read_record
from repro.train_implicit import implicit_jobs, train_implicit_group
from repro.train_run import to_unit_float
from tests.conftest import stage_env, study_copy


@pytest.fixture(autouse=True)
def _restore_torch_settings():
    """A run sets this process's torch threads and determinism, as a stage's worker would."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


# --- The SIREN ------------------------------------------------------------------------------------


def test_siren_weights_are_drawn_within_the_siren_bounds():
    torch.manual_seed(0)
    nz, hidden = 30, 64
    siren = SirenDecoder(nz, (1, 8, 8), hidden=hidden)
    first = siren.first.linear.weight
    bound_first = 1 / (2 + nz)  # U(−1/fan_in, 1/fan_in)
    assert first.abs().max() <= bound_first and first.abs().max() > 0.9 * bound_first
    bound = math.sqrt(6 / hidden) / SIREN_OMEGA0  # U(−√(6/fan_in)/ω₀, √(6/fan_in)/ω₀)
    for weight in [layer.linear.weight for layer in siren.hidden] + [siren.out.weight]:
        assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert len(siren.hidden) + 1 == 4  # Implicit-GON.py: four sine layers, then a linear output


def test_omega0_multiplies_the_pre_activation():
    layer = SineLayer(1, 1, omega0=30.0)
    with torch.no_grad():
        layer.linear.weight.fill_(0.3)
        layer.linear.bias.fill_(0.1)
    out = layer(torch.tensor([[0.5]]))
    assert out.item() == pytest.approx(math.sin(30.0 * (0.3 * 0.5 + 0.1)), abs=1e-6)


def test_a_one_layer_siren_is_the_hand_computed_function_of_coordinates_and_latent():
    siren = SirenDecoder(nz=1, image_shape=(1, 2, 2), hidden=1, layers=1, omega0=30.0)
    wy, wx, wz, b, wo, bo = 0.05, -0.02, 0.4, 0.01, 2.0, 0.5
    with torch.no_grad():
        siren.first.linear.weight.copy_(torch.tensor([[wy, wx, wz]]))  # input = [y, x, z]
        siren.first.linear.bias.fill_(b)
        siren.out.weight.fill_(wo)
        siren.out.bias.fill_(bo)
    z = 0.3
    image = siren(torch.full((1, 1, 1, 1), z))[0, 0]
    centres = (-0.5, 0.5)  # pixel centres of a 2×2 grid in [−1, 1]
    expected = [
        [wo * math.sin(30.0 * (wy * y + wx * x + wz * z + b)) + bo for x in centres]
        for y in centres
    ]
    assert torch.allclose(image, torch.tensor(expected), atol=1e-5)


def test_the_grid_is_pixel_centres_and_a_coarse_pixel_is_the_mean_of_the_fine_ones_it_covers():
    assert pixel_grid(2).tolist() == [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]
    fine = pixel_grid(32).view(1, 32, 32, 2).permute(0, 3, 1, 2)
    coarse = pixel_grid(16).view(16, 16, 2).permute(2, 0, 1)
    assert torch.allclose(downsample(fine, 16)[0], coarse, atol=1e-6)


def test_render_samples_the_same_function_on_finer_and_coarser_grids():
    torch.manual_seed(0)
    siren = SirenDecoder(nz=4, image_shape=(1, 32, 32), hidden=16)
    z = torch.randn(3, 4, 1, 1)
    assert siren.render(z, 64).shape == (3, 1, 64, 64)
    assert siren.render(z, 8).shape == (3, 1, 8, 8)
    assert torch.equal(siren.render(z, 32), siren(z))  # its own resolution is forward


def test_the_codes_siren_has_its_parameter_count():
    # Implicit-GON.py prints 206,593 for gon_shape [34, 256, 256, 256, 256, 1].
    assert count_parameters(SirenDecoder(32, (1, 28, 28), hidden=256)) == 206_593


# --- The registry and GON on the SIREN ------------------------------------------------------------


def test_the_registry_has_the_siren_and_builds_gon_and_the_implicit_ae():
    assert "siren" in ARCHITECTURE_REGISTRY
    x = torch.rand(2, 1, 32, 32)
    gon = build_model("gon", nz=4, ngf=8, architecture="siren")
    ae = build_model("ae", nz=4, ngf=8, architecture="siren")
    assert isinstance(gon.encoder, GradientOriginEncoder) and isinstance(gon.decoder, SirenDecoder)
    assert isinstance(ae.encoder, AmortisedEncoder) and isinstance(ae.encoder.net, ConvEncoder)
    assert gon.decoder.first.linear.out_features == 8  # ngf is the SIREN's width
    for model in (gon, ae):
        z, x_hat = model(x)
        assert z.shape == (2, 4, 1, 1) and x_hat.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="32x32"):
        build_model("ae", nz=4, ngf=8, architecture="siren", image_size=16)


def test_the_gon_latent_on_the_siren_is_the_codes_negative_gradient_at_the_origin(tiny_params):
    cfg = tiny_params.implicit
    model = implicit_model("gon", cfg, channels=1, resolution=8, seed=0)
    x = torch.rand(cfg.batch_size, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    z = model.encoder(x, model.decoder, create_graph=False)
    # Implicit-GON.py: g and x as (B, pixels, C); L = ((g − x)**2).sum(1).mean(); z = −∇_{z0} L.
    z0 = torch.zeros(cfg.batch_size, cfg.nz, 1, 1, requires_grad=True)
    g = model.decoder(z0).flatten(2).transpose(1, 2)
    loss = ((g - x.flatten(2).transpose(1, 2)) ** 2).sum(1).mean()
    (grad,) = torch.autograd.grad(loss, z0)
    assert torch.allclose(z, -grad, rtol=1e-5, atol=1e-8)
    # ... and an image's latent does not depend on its batch (held-out images in any chunks).
    assert torch.allclose(encode(model, x, chunk=3), z, rtol=1e-5, atol=1e-8)


def test_one_seed_gives_every_method_and_resolution_the_same_siren(tiny_params):
    cfg = tiny_params.implicit
    gon = implicit_model("gon", cfg, 1, 32, seed=3).decoder.state_dict()
    ae = implicit_model("ae", cfg, 1, 32, seed=3).decoder.state_dict()
    low = implicit_model("gon", cfg, 1, 16, seed=3).decoder.state_dict()
    assert all(torch.equal(gon[k], ae[k]) and torch.equal(gon[k], low[k]) for k in gon)


# --- Super-resolution and samples -----------------------------------------------------------------


def test_a_decoder_that_reproduces_the_target_scores_zero_and_bicubic_of_a_constant_is_exact():
    target = torch.full((2, 1, 32, 32), 0.6)
    low = downsample(target, 16)
    scores = super_resolution_sse(target.clone(), low, target)
    assert scores["decoded_sse_per_image"] == 0.0
    assert scores["bicubic_sse_per_image"] == pytest.approx(0.0, abs=1e-10)


def test_the_super_resolution_scores_are_mean_sse_per_image_with_clamped_images():
    target = torch.zeros(2, 1, 4, 4)
    decoded = torch.full((2, 1, 4, 4), 0.5)
    decoded[1] = 1.5  # clamped to 1: an image is in [0, 1]
    low = torch.zeros(2, 1, 2, 2)
    scores = super_resolution_sse(decoded, low, target)
    assert scores == {
        "decoded_sse_per_image": (16 * 0.25 + 16 * 1.0) / 2,
        "bicubic_sse_per_image": 0,
    }
    assert bicubic_upsample(torch.ones(1, 1, 2, 2) * 2, 4).max() == 1.0


def test_samples_come_from_the_gaussian_fitted_to_the_latents():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([[2.0, 0.0], [1.0, 0.5]])
    latents = torch.randn(4000, 2, generator=g) @ scale.T + torch.tensor([1.0, -3.0])
    samples = gaussian_samples(latents, 40_000, g).flatten(1)
    assert samples.shape == (40_000, 2)
    assert torch.allclose(samples.mean(0), latents.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(samples.T), torch.cov(latents.T), atol=0.08)
    # A latent that never varies stays where it is (a singular covariance is fine).
    flat = torch.cat([latents[:, :1], torch.full((4000, 1), 0.25)], dim=1)
    assert torch.allclose(gaussian_samples(flat, 100, g)[:, 1].flatten(), torch.tensor(0.25))


def test_the_image_grid_tiles_images_on_a_white_background():
    images = torch.zeros(3, 1, 2, 2)
    grid = image_grid(images, ncol=2, pad=1)
    assert grid.shape == (1, 7, 7)  # two rows of two cells: 1 + 2 · (2 + 1) pixels a side
    assert grid[0, 1:3, 1:3].sum() == 0 and grid[0, 4:6, 1:3].sum() == 0  # images 0 and 2
    assert grid[0, 4:6, 4:6].tolist() == [[1, 1], [1, 1]]  # no fourth image: background


# --- Runs -----------------------------------------------------------------------------------------


def test_a_run_writes_a_record_with_finite_held_out_losses(tiny_params, tiny_data_dir, tmp_path):
    result = implicit_run("gon", "synthetic", 0, tiny_params, tmp_path)
    out = tmp_path / "runs" / "implicit" / "synthetic" / "gon-s0"
    record = read_record(ImplicitMetrics, out / "metrics.json")
    assert record.run == "implicit/synthetic/gon-s0" and record.resolution == 32
    assert record.super_resolution is None and record.test_images == 16
    assert all(math.isfinite(v) and v > 0 for v in record.test.values())
    assert record.test["mse_per_pixel"] == pytest.approx(record.test["sse_per_image"] / 1024)
    # the yardstick: every held-out image decoded as the mean of the training images used
    data = tiny_data_dir
    train = to_unit_float(load_split(data, "train")[0][: tiny_params.implicit.train_images])
    test = to_unit_float(load_split(data, "test")[0][:16])
    mean_sse = (train.mean(0, keepdim=True) - test).pow(2).flatten(1).sum(1).mean()
    assert record.test["mean_image_sse_per_image"] == pytest.approx(float(mean_sse), rel=1e-6)
    assert record.to_dict() == result["metrics"]
    assert [row["step"] for row in result["history"]][-1] == tiny_params.implicit.steps
    assert all((out / f).stat().st_size > 0 for f in ("samples.png", "recon.png"))
    saved = load_torch(tmp_path / "models" / "implicit" / "synthetic" / "gon-s0" / "model.pt")
    assert saved["method"] == "gon" and saved["config"]["resolution"] == 32


def test_a_super_resolution_run_fills_super_resolution(tiny_params, tiny_data_dir, tmp_path):
    implicit_run("gon", "synthetic", 1, tiny_params, tmp_path, low_res=True)
    low_res = tiny_params.implicit.low_res
    path = tmp_path / "runs" / "implicit" / "synthetic" / f"gon_sr{low_res}-s1" / "metrics.json"
    record = read_record(ImplicitMetrics, path)
    assert record.resolution == low_res and record.method == "gon"
    assert set(record.super_resolution) == {"decoded_sse_per_image", "bicubic_sse_per_image"}
    assert all(math.isfinite(v) for v in record.super_resolution.values())
    with pytest.raises(ValueError, match="GON only"):
        implicit_run("ae", "synthetic", 1, tiny_params, tmp_path, low_res=True)


def test_a_non_finite_loss_names_the_run_and_the_step(
    tiny_params, tiny_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(implicit, "implicit_loss", lambda x_hat, x: (x_hat - x).sum() * math.nan)
    with pytest.raises(DivergenceError, match="implicit/synthetic/ae-s0: .* at step 0"):
        implicit_run("ae", "synthetic", 0, tiny_params, tmp_path)


def test_the_group_is_every_dataset_method_and_seed_plus_super_resolution_on_the_first(
    tiny_params, tiny_data_dir, tmp_path
):
    train = dataclasses.replace(tiny_params.train, workers=1)
    params = dataclasses.replace(tiny_params, train=train)
    assert [job.name for job in implicit_jobs(params, tmp_path)] == [
        "implicit/synthetic/gon-s0",
        "implicit/synthetic/gon-s1",
        "implicit/synthetic/ae-s0",
        "implicit/synthetic/ae-s1",
        "implicit/synthetic/gon_sr16-s0",
        "implicit/synthetic/gon_sr16-s1",
    ]
    train_implicit_group(params, tmp_path)
    written = sorted(p.parent.name for p in (tmp_path / "runs").rglob("metrics.json"))
    assert written == ["ae-s0", "ae-s1", "gon-s0", "gon-s1", "gon_sr16-s0", "gon_sr16-s1"]


@pytest.mark.stage
def test_the_stage_script_writes_what_a_run_in_this_process_writes(
    tiny_params, tiny_data_dir, tmp_path
):
    stage_root = tmp_path / "stage"
    study_copy(stage_root, yaml.safe_dump(tiny_params.to_dict(), sort_keys=False))
    shutil.copytree(tiny_data_dir, stage_root / "data" / "synthetic")
    proc = subprocess.run(
        [sys.executable, "pipelines/implicit.py"],
        cwd=stage_root,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    ours = implicit_run("ae", "synthetic", 1, tiny_params, tmp_path)["metrics"]
    path = stage_root / "runs" / "implicit" / "synthetic" / "ae-s1" / "metrics.json"
    theirs = read_record(ImplicitMetrics, path).to_dict()
    assert theirs | {"train_seconds": None} == ours | {"train_seconds": None}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_the_implicit_run_trains_on_train_device_and_refuses_cuda_without_one(
    tiny_params, tiny_data_dir, tmp_path
):
    """The study runs where ``train.device`` says (tests/test_gpu.py compares the GPU with the
    CPU); asked for CUDA on a machine without it, a run stops naming the key, never falls back."""
    params = dataclasses.replace(
        tiny_params, train=dataclasses.replace(tiny_params.train, device="cuda")
    )
    with pytest.raises(RuntimeError, match="train.device: 'cuda' was asked for"):
        implicit_run("ae", "synthetic", 0, params, tmp_path)
