"""The variational GON vs VAE study: its bounds, latent, samples and MMD against exact answers."""

import dataclasses
import math
from statistics import NormalDist

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.data import load_split
from repro.errors import DivergenceError
from repro.io import load_torch
from repro.names import VARIATIONAL_METHODS
from repro.records import VariationalMetrics, read_record
from repro.sample_scores import (
    CLASSIFIER_IMAGES,
    classifier_score,
    fit_classifier,
    median_bandwidth,
    mmd2_gaussian,
    pixel_gaussian_samples,
)
from repro.train_run import to_unit_float
from repro.train_variational import train_variational_group
from repro.variational import (
    VAE,
    VARIATIONAL_MODELS,
    VariationalGON,
    dataset_classifier,
    train_variational,
    variational_run,
)
from repro.variational_eval import (
    bce_per_image,
    bounds_of_batch,
    gaussian_kl,
    held_out_bounds,
    log_importance_weights,
    log_normal,
    negative_iwae,
    prior_samples,
    reparameterize,
)
from tests.conftest import blob_images

PIXELS = 32 * 32


class HalfGreyModel(nn.Module):
    """q(z̃|x) = N(μ, σ²) fixed, decoder D(z̃) = 0.5 everywhere: every bound in closed form."""

    def __init__(self, mu: list[float], logvar: list[float]):
        super().__init__()
        self.nz = len(mu)
        self.mu, self.logvar = torch.tensor([mu]), torch.tensor([logvar])

    def posterior(self, x):
        return self.mu.expand(x.shape[0], -1), self.logvar.expand(x.shape[0], -1)

    def decode(self, z):
        return torch.full((z.shape[0], 1, 32, 32), 0.5)


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return blob_images(n, seed=seed).float() / 255


def test_the_elbo_pieces_match_their_closed_forms():
    # KL(N((1, 0), diag(1, 2)) || N(0, I)) = ½(1 + 0 − 1 − 0) + ½(0 + 2 − 1 − log 2)
    kl = gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2)]]))
    assert kl.item() == pytest.approx(1 - 0.5 * math.log(2), rel=1e-6)
    # BCE of a 0.25 prediction for a white pixel is log 4, summed over every pixel
    x = torch.ones(2, 1, 32, 32)
    assert bce_per_image(torch.full_like(x, 0.25), x).tolist() == pytest.approx(
        [PIXELS * math.log(4)] * 2, rel=1e-6
    )
    # log N(μ; μ, σ²) = −½(log 2π + log σ²) per dimension
    z = torch.tensor([[0.5, -1.0]])
    assert log_normal(z, z, torch.zeros(1, 2)).item() == pytest.approx(-math.log(2 * math.pi))
    assert (
        reparameterize(torch.tensor([1.0]), torch.tensor([math.log(4)]), torch.tensor([0.5])) == 2
    )


def test_the_bounds_of_a_known_posterior_and_decoder_are_exact():
    # μ = 1, σ = 1, D ≡ ½: BCE = 1024 log 2; KL = ½; log p(z) − log q(z|x) = −½ − ε at z = 1 + ε,
    # so with ε = ±1: −IWAE = 1024 log 2 + ½ − log cosh 1
    model = HalfGreyModel([1.0], [0.0])
    out = bounds_of_batch(model, images(1), torch.tensor([[[-1.0]], [[1.0]]]))
    assert out["bce"].item() == pytest.approx(PIXELS * math.log(2), rel=1e-6)
    assert out["kl"].item() == pytest.approx(0.5, rel=1e-6)
    assert out["neg_elbo"].item() == pytest.approx(PIXELS * math.log(2) + 0.5, rel=1e-6)
    expected = PIXELS * math.log(2) + 0.5 - math.log(math.cosh(1.0))
    assert out["neg_iwae"].item() == pytest.approx(expected, rel=1e-6)


def test_the_iwae_bound_is_at_least_the_elbo_on_the_same_samples_and_equal_at_one():
    torch.manual_seed(0)
    model = VariationalGON(nz=4, ngf=4, channels=1, inner_norm=8).eval()
    x = images(3)
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        eps = torch.randn(16, 3, 4)
        z = reparameterize(mu, logvar, eps)
        nll = bce_per_image(model.decode(z.flatten(0, 1)), x.repeat(16, 1, 1, 1)).view(16, 3)
    log_w = log_importance_weights(nll, z, mu, logvar)
    # Jensen: −log mean_k w_k ≤ −mean_k log w_k (the ELBO with its KL estimated at the samples)
    assert (negative_iwae(log_w) <= -log_w.mean(0)).all()
    # one sample: the IWAE is that ELBO, term by term
    single = nll[0] + log_normal(z[0], mu, logvar) - log_normal(z[0], 0 * mu, 0 * logvar)
    torch.testing.assert_close(negative_iwae(log_w[:1]), single, rtol=0, atol=1e-4)
    # q = the prior: KL = 0 in closed form and at every sample, so −IWAE = −ELBO at k = 1
    prior = bounds_of_batch(HalfGreyModel([0.0] * 4, [0.0] * 4), x, eps[:1])
    torch.testing.assert_close(prior["neg_iwae"], prior["neg_elbo"], rtol=0, atol=0)
    # and over held-out images with many samples the reported numbers keep the order
    bounds = held_out_bounds(model, x, iw_samples=32, seed=0)
    assert bounds["neg_iwae"] <= bounds["neg_elbo"]
    assert bounds["neg_elbo"] == pytest.approx(bounds["bce"] + bounds["kl"], rel=1e-12)


def inner_loss_by_hand(model: VariationalGON, x: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """Variational-GON.py's inner loss at ε = 0, written out: (BCE + KL at μ(z0)) / inner_norm."""
    mu = z0 @ model.mu_head.weight.T + model.mu_head.bias
    logvar = z0 @ model.logvar_head.weight.T + model.logvar_head.bias
    x_hat = model.decoder(mu[:, :, None, None])
    bce = F.binary_cross_entropy(x_hat, x, reduction="sum")
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
    return (bce + kl) / model.inner_norm


def test_the_vgon_latent_is_the_negative_gradient_of_the_inner_loss_at_the_origin():
    torch.manual_seed(1)
    model = VariationalGON(nz=4, ngf=4, channels=1, inner_norm=8).double().eval()
    x = images(3).double()
    expected = -torch.func.grad(lambda z0: inner_loss_by_hand(model, x, z0))(
        torch.zeros(3, 4, dtype=torch.float64)
    )
    torch.testing.assert_close(model.features(x, None, create_graph=False), expected)
    # the posterior is the heads of that latent
    mu, logvar = model.posterior(x)
    torch.testing.assert_close(mu, model.mu_head(expected))
    torch.testing.assert_close(logvar, model.logvar_head(expected))


def test_a_constant_decoder_leaves_only_the_kl_pull_at_the_origin():
    # D ≡ const: the BCE has no gradient, and z = −(W_μᵀ b_μ + ½ W_lvᵀ (e^{b_lv} − 1)) / inner_norm
    torch.manual_seed(2)
    model = VariationalGON(nz=3, ngf=2, channels=1, inner_norm=4).double().eval()
    last = model.decoder.net[-2]
    nn.init.zeros_(last.weight)
    x = images(2).double()
    m, lv = model.mu_head, model.logvar_head
    pull = (m.weight.T @ m.bias + 0.5 * lv.weight.T @ (lv.bias.exp() - 1)) / 4
    torch.testing.assert_close(model.features(x, None, False), -pull.expand(2, 3).detach())


def test_in_training_the_latent_is_drawn_and_differentiable_through_the_decoder():
    torch.manual_seed(3)
    model = VariationalGON(nz=4, ngf=4, channels=1, inner_norm=8).train()
    x = images(4)
    a = model.features(x, torch.Generator().manual_seed(0), create_graph=True)
    b = model.features(x, torch.Generator().manual_seed(0), create_graph=True)
    c = model.features(x, torch.Generator().manual_seed(1), create_graph=True)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)  # the inner step's z̃0 = μ(0) + σ(0)·ε is a draw
    (g,) = torch.autograd.grad(a.pow(2).sum(), model.decoder.net[0].weight)
    assert g.abs().sum() > 0  # second-order: the decoder trains through the inner step


def test_the_mmd_is_zero_for_identical_sets_larger_when_shifted_and_symmetric():
    a, b = images(8, seed=0), images(8, seed=1)
    assert mmd2_gaussian(a, a.clone()) == 0.0
    assert 0 < mmd2_gaussian(a, b) < mmd2_gaussian(a, (b + 0.5).clamp(0, 1))
    assert mmd2_gaussian(a, b) == pytest.approx(mmd2_gaussian(b, a), rel=1e-12)


def test_the_mmd_of_two_points_and_the_median_bandwidth_by_hand():
    # one point each, distance t: σ² = t², k = e^{−½}, MMD² = 1 + 1 − 2e^{−½}
    assert mmd2_gaussian(torch.zeros(1, 1), torch.full((1, 1), 3.0)) == pytest.approx(
        2 - 2 * math.exp(-0.5), rel=1e-12
    )
    # 0, 1 and 3: squared distances 1, 9, 4, median 4
    assert median_bandwidth(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])) == 4.0


def test_the_pixel_gaussian_baseline_has_the_training_images_pixel_moments():
    train = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)])  # mean 0.25, sd 0.35
    s = pixel_gaussian_samples(train, 20_000, torch.Generator().manual_seed(0))
    assert s.shape == (20_000, 1, 2, 2) and ((s >= 0) & (s <= 1)).all()
    # N(0.25, 0.354²) clipped at 0: E = μΦ(μ/σ) + σφ(μ/σ) (the clip at 1 is negligible)
    mu, sd = 0.25, float(train.std(0)[0, 0, 0])
    n = NormalDist()
    assert float(s.mean()) == pytest.approx(mu * n.cdf(mu / sd) + sd * n.pdf(mu / sd), abs=0.005)
    constant = torch.full((3, 1, 2, 2), 0.7)  # no spread: every sample is the mean image
    assert torch.equal(
        pixel_gaussian_samples(constant, 4, torch.Generator()), torch.full((4, 1, 2, 2), 0.7)
    )


class Fixed(nn.Module):
    """A 'classifier' returning fixed logits per image (its input is the logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_the_classifier_score_runs_from_one_to_the_number_of_classes():
    uniform = torch.zeros(6, 4)  # every sample the same, undecided prediction
    assert classifier_score(Fixed(), uniform) == pytest.approx(1.0)
    confident = torch.eye(4).repeat(2, 1) * 1e4  # each sample sure of one class, classes balanced
    assert classifier_score(Fixed(), confident) == pytest.approx(4.0)
    one_class = torch.eye(4)[[0, 0, 0]] * 1e4  # sure, but always the same class: no diversity
    assert classifier_score(Fixed(), one_class) == pytest.approx(1.0)


def test_the_classifier_is_the_same_every_time_and_leaves_the_callers_random_numbers():
    images, labels = blob_images(64).float() / 255, torch.arange(64) % 3
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    first = fit_classifier(images, labels)
    assert torch.equal(torch.rand(1), expected)
    second = fit_classifier(images, labels)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )
    assert first(images).shape == (64, 3)


def test_a_process_fits_the_dataset_classifier_once_and_it_is_the_seeded_fit(tiny_data_dir):
    """Every model of the study is scored by one classifier: the cached one is the fit itself."""
    dataset_classifier.cache_clear()
    first = dataset_classifier(tiny_data_dir)
    assert dataset_classifier(tiny_data_dir) is first
    images, labels = load_split(tiny_data_dir, "train")
    fresh = fit_classifier(to_unit_float(images[:CLASSIFIER_IMAGES]), labels[:CLASSIFIER_IMAGES])
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), fresh.parameters(), strict=True)
    )


def test_one_kernel_scores_every_sampler_against_the_same_reference():
    a, ref = torch.tensor([[0.0], [2.0]]), torch.tensor([[0.0], [1.0]])
    # σ² = 1 fixed: k(0,0)=1, k(0,2)=e^-2, k(0,1)=e^-0.5, k(2,1)=e^-0.5, k(1,1)=1
    expected = (2 + 2 * math.exp(-2)) / 4 + (2 + 2 * math.exp(-0.5)) / 4
    expected -= 2 * (1 + math.exp(-0.5) + math.exp(-2) + math.exp(-0.5)) / 4
    assert mmd2_gaussian(a, ref, sigma2=1.0) == pytest.approx(expected)
    assert median_bandwidth(ref, ref[:0]) == 1.0  # the reference alone: its one pair, distance² 1


@pytest.mark.parametrize("method", VARIATIONAL_METHODS)
def test_prior_samples_are_images_either_way_and_seeded(method):
    torch.manual_seed(0)
    model = VARIATIONAL_MODELS[method](4, 4, 1, 8)
    draw = {
        way: prior_samples(model, 5, way, torch.Generator().manual_seed(7))
        for way in ("heads", "direct")
    }
    for s in draw.values():
        assert s.shape == (5, 1, 32, 32) and ((s >= 0) & (s <= 1)).all()
    assert not torch.equal(draw["heads"], draw["direct"])
    again = prior_samples(model, 5, "direct", torch.Generator().manual_seed(7))
    assert torch.equal(again, draw["direct"]) and model.training  # mode restored
    with pytest.raises(ValueError, match="unknown way of sampling"):
        prior_samples(model, 1, "posterior", torch.Generator())


def test_the_models_share_the_decoder_and_the_vae_adds_the_mirrored_encoder():
    assert set(VARIATIONAL_MODELS) == set(VARIATIONAL_METHODS)
    gon, vae = VariationalGON(48, 32, 1, 64), VAE(48, 32, 1, 64)
    n_gon = sum(p.numel() for p in gon.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    assert n_vae - n_gon == sum(p.numel() for p in vae.encoder.parameters())


def test_a_non_finite_loss_stops_the_run_naming_it_and_the_step(tiny_params, monkeypatch):
    nan = torch.tensor(float("nan"), requires_grad=True)
    monkeypatch.setattr("repro.variational.variational_loss", lambda *a: nan)
    model = VAE(4, 4, 1, 32)
    with pytest.raises(DivergenceError, match=r"test/vae: non-finite .* epoch 1, step 0"):
        train_variational(model, blob_images(64), tiny_params.variational, 0, "test/vae")


@pytest.mark.parametrize("method", VARIATIONAL_METHODS)
def test_a_tiny_run_writes_a_record_with_finite_bounds(tiny_params, tiny_data_dir, method):
    root = tiny_data_dir.parents[1]
    result = variational_run(method, 0, tiny_params, root)
    run_dir = root / "runs" / "variational" / "synthetic" / f"{method}-s0"
    record = read_record(VariationalMetrics, run_dir / "metrics.json")
    assert record.to_dict() == result["metrics"]
    assert set(record.test) == {"neg_elbo", "bce", "kl", "neg_iwae"}
    assert all(math.isfinite(v) for v in record.test.values())
    assert record.test["neg_iwae"] <= record.test["neg_elbo"]
    sets = {"heads", "direct", "pixel_gaussian", "test_images"}
    assert set(record.samples) == {"mmd2", "score", "relative_score"}
    assert set(record.samples["relative_score"]) == {"heads", "direct"}
    assert set(record.samples["mmd2"]) == set(record.samples["score"]) == sets
    assert record.samples["mmd2"]["test_images"] == 0.0  # the reference against itself
    assert all(1.0 <= v <= 10.0 for v in record.samples["score"].values())
    assert [row["epoch"] for row in result["history"]] == [1]
    for name in ("samples_heads.png", "samples_direct.png"):
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"
    saved = load_torch(root / "models" / "variational" / "synthetic" / f"{method}-s0" / "model.pt")
    assert saved["method"] == method and saved["config"]["nz"] == tiny_params.variational.nz
    again = variational_run(method, 0, tiny_params, root)["metrics"]  # seeded: the same numbers
    assert (again["test"], again["samples"]) == (record.test, record.samples)


def test_the_group_trains_every_method_and_seed(tiny_params, tiny_data_dir):
    root = tiny_data_dir.parents[1]
    params = dataclasses.replace(
        tiny_params, train=dataclasses.replace(tiny_params.train, workers=1)
    )
    train_variational_group(params, root)
    cfg = params.variational
    for method in cfg.methods:
        for seed in cfg.seeds:
            path = (
                root / "runs" / "variational" / "synthetic" / f"{method}-s{seed}" / "metrics.json"
            )
            assert read_record(VariationalMetrics, path).mlflow_run_id is None  # tracking off


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_the_variational_run_trains_on_train_device_and_refuses_cuda_without_one(
    tiny_params, tiny_data_dir
):
    """The study runs where ``train.device`` says (tests/test_gpu.py compares the GPU with the
    CPU); asked for CUDA on a machine without it, a run stops naming the key, never falls back."""
    params = dataclasses.replace(
        tiny_params, train=dataclasses.replace(tiny_params.train, device="cuda")
    )
    with pytest.raises(RuntimeError, match="train.device: 'cuda' was asked for"):
        variational_run("vae", 0, params, tiny_data_dir.parents[1])
