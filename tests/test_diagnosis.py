"""The diagnosis of GON with the MLP decoder (repro.diagnosis): the mechanism it names, checked
exactly on small models, and the stage's record on tiny data."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from repro.diagnosis import VARIANTS, diagnose, probe, with_batchnorm
from repro.encoders import build_model, sse_per_image
from repro.records import DiagnosisMetrics, read_record
from repro.report import formatting
from repro.report.loaders import Run
from repro.report.sections.diagnosis import diagnosis_section
from tests.conftest import blob_images
from tests.factories import diagnosis_record


def test_summing_the_inner_loss_scales_the_latent_by_exactly_n_h_w():
    """η = n·H·W gives the latent of the inner loss summed over pixels and batch (linearity)."""
    torch.manual_seed(0)
    model = build_model("gon", nz=4, architecture="mlp", inner_norm=16).eval()
    x = blob_images(5).float() / 255
    z_as_run = model.encoder(x, model.decoder, create_graph=False)
    scale = 16 * 32 * 32
    assert VARIANTS["summed"].step_size(scale) == scale
    model.encoder.step_size = VARIANTS["summed"].step_size(scale)
    z_summed = model.encoder(x, model.decoder, create_graph=False)
    zero = torch.zeros_like(z_as_run, requires_grad=True)
    (grad,) = torch.autograd.grad(sse_per_image(model.decoder(zero), x).sum(), zero)
    torch.testing.assert_close(z_summed, -grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z_summed, z_as_run * scale, rtol=1e-5, atol=1e-6)


def test_batchnorm_at_the_origin_amplifies_the_latent_gradient_by_one_over_sqrt_eps():
    """At z = 0 every image gives the same pre-activation: BatchNorm's batch variance is 0, and
    its backward multiplies the (batch-centred) gradient by 1/sqrt(eps)."""
    torch.manual_seed(0)
    first = nn.Linear(4, 6, bias=False)
    rest = nn.Sequential(nn.ELU(), nn.Linear(6, 10))
    bn = nn.BatchNorm1d(6)  # training mode: batch statistics; γ = 1, β = 0
    x = torch.rand(8, 10)
    z = torch.zeros(8, 4, requires_grad=True)
    (plain,) = torch.autograd.grad((rest(first(z)) - x).pow(2).sum(), z)
    z = torch.zeros(8, 4, requires_grad=True)
    (normed,) = torch.autograd.grad((rest(bn(first(z))) - x).pow(2).sum(), z)
    # the same downstream gradient g (both layers output 0 at the origin), then W^T:
    centred = plain - plain.mean(0, keepdim=True)
    torch.testing.assert_close(normed, centred / math.sqrt(bn.eps), rtol=1e-4, atol=1e-4)


def test_with_batchnorm_puts_it_after_the_first_linear_layer_and_keeps_the_output_shape():
    model = build_model("gon", nz=4, architecture="mlp")
    with_batchnorm(model)
    layers = list(model.decoder.net)
    first = next(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
    assert isinstance(layers[first + 1], nn.BatchNorm1d)
    assert layers[first + 1].num_features == layers[first].out_features
    assert model.decoder(torch.zeros(3, 4, 1, 1)).shape == (3, 1, 32, 32)


def test_probe_scores_the_latent_and_the_origin_on_the_same_images():
    torch.manual_seed(0)
    model = build_model("gon", nz=4, architecture="mlp", inner_norm=8)
    images = blob_images(6)
    out = probe(model, images)
    x = images.float() / 255
    z = model.encoder(x, model.decoder, create_graph=False)
    assert out["latent_norm"] == pytest.approx(float(z.flatten(1).norm(dim=1).mean()))
    with torch.no_grad():
        origin = model.decoder(torch.zeros_like(z))
    assert out["origin_sse_per_image"] == pytest.approx(float(sse_per_image(origin, x).mean()))
    assert out["step_size"] == 1.0
    assert model.training  # probing leaves the mode as it found it


def test_the_stage_record_has_every_variant_and_seed_and_reads_back(tiny_params, tiny_data_dir):
    eff = dataclasses.replace(
        tiny_params.efficiency, dataset="synthetic", train_sizes=[16, 32], seeds=[0, 1]
    )
    params = dataclasses.replace(tiny_params, efficiency=eff)
    root = tiny_data_dir.parents[1]
    record = diagnose(params, root)
    assert {(r["variant"], r["seed"]) for r in record.rows} == {
        (v, s) for v in VARIANTS for s in (0, 1)
    }
    assert record.train_size == 32 and record.inner_loss_divisor == eff.batch_size * 32 * 32
    for r in record.rows:
        assert all(math.isfinite(r[k]) for k in ("latent_norm", "test_sse_per_image"))
    learned = [r["step_size"] for r in record.rows if r["variant"] == "learned_step"]
    assert all(eta != 1.0 for eta in learned)  # η was trained
    record.write(root / "gon_mlp.json")
    assert read_record(DiagnosisMetrics, root / "gon_mlp.json") == record


def test_the_finding_is_decided_by_the_numbers():
    inert = diagnosis_section(diagnosis_record(0.1), [], confidence=0.95, headline_bn="batch")
    assert inert.latent_is_inert and inert.recovers == ("summed",)
    (as_run, summed) = inert.rows
    assert as_run.versus_as_run == "" and summed.versus_as_run == "lower"
    assert summed.gap.mean == pytest.approx(60.0 - (30.0 + (0.0 + 0.1 - 0.05) / 3))
    carries = diagnosis_section(diagnosis_record(5.0), [], confidence=0.95, headline_bn="batch")
    assert not carries.latent_is_inert  # 5 of 61 SSE per image: more than 1%
    assert diagnosis_section(None, [], confidence=0.95, headline_bn="batch").status == "not run"


def test_the_diagnosis_text_states_the_measured_finding():
    env = formatting._environment()
    section = diagnosis_section(diagnosis_record(0.1), [], confidence=0.95, headline_bn="batch")
    text = env.get_template("diagnosis.md.j2").render(diagnosis=section, cl="95%")
    assert "**As run, the latent is inert.**" in text
    assert "**What changes it:** η = n·H·W (test SSE 30.02" in text
    assert "| η = n·H·W | 3 | 1.638e+04 | 9 [9, 9] | 30.02 [29.83, 30.21] |" in text


def test_the_conv_gon_latent_norm_of_the_main_runs_is_shown_beside_it(tmp_path):
    def run(method: str, seed: int, norm: float) -> Run:
        test = {"sse_per_image": 7.0, "mse_per_pixel": 0.007, "latent_norm": norm}
        metrics = {"losses": {"batch": {"test": test}}}
        return Run("mnist", method, 32, seed, tmp_path, metrics, None)

    runs = [run("gon", 0, 11.0), run("gon", 1, 13.0), run("ae", 0, 99.0)]
    section = diagnosis_section(diagnosis_record(0.1), runs, confidence=0.95, headline_bn="batch")
    assert section.conv_latent_norm is not None
    assert (section.conv_latent_norm.mean, section.conv_latent_norm.n) == (12.0, 2)


def test_a_variant_that_stays_inert_is_not_counted_as_a_fix():
    record = diagnosis_record(0.1)
    still = [
        {**r, "variant": "learned_step", "test_sse_per_image": r["test_sse_per_image"] - 0.01}
        for r in record.rows
        if r["variant"] == "as_run"
    ]
    record = dataclasses.replace(
        record,
        rows=record.rows + still,
        variants=record.variants | {"learned_step": "η learned, from 1"},
    )
    section = diagnosis_section(record, [], confidence=0.95, headline_bn="batch")
    assert section.recovers == ("summed",) and section.still_inert == ("learned_step",)
