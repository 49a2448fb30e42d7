"""GON's latent is one gradient step from the origin, and D is trained *through* that step."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from repro.encoders import GradientOriginEncoder, LatentModel, build_model, gon_training_loss


def tiny_decoder(nz: int = 3) -> nn.Module:
    """A decoder small enough for float64 finite differences: (B, nz, 1, 1) → (B, 1, 4, 4)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(nz, 6),
        nn.Tanh(),
        nn.Linear(6, 16),
        nn.Sigmoid(),
        nn.Unflatten(1, (1, 4, 4)),
    )


def test_gon_latent_is_minus_the_gradient_of_the_inner_loss_at_the_origin():
    torch.manual_seed(0)
    model = build_model("gon", nz=8, ngf=4, inner_norm=5)
    x = torch.rand(5, 1, 32, 32)
    # GON.py, written out: z0 = 0, L = ((D(z0) - x)**2).sum(1).mean(), z = -dL/dz0.
    z0 = torch.zeros(5, 8, 1, 1, requires_grad=True)
    loss = ((model.decoder(z0) - x) ** 2).sum(1).mean()
    (grad,) = torch.autograd.grad(loss, z0)
    z, _ = model(x)
    torch.testing.assert_close(z, -grad)
    assert z.abs().sum() > 0  # not trivially zero


def test_inner_loss_normalised_by_training_batch_size_makes_latents_batch_size_independent():
    decoder = tiny_decoder().eval()
    enc = GradientOriginEncoder(nz=3, inner_norm=64)
    x = torch.rand(10, 1, 4, 4)
    full = enc(x, decoder, create_graph=False)
    half = enc(x[:5], decoder, create_graph=False)
    torch.testing.assert_close(full[:5], half)


def _outer_loss(
    decoder: nn.Module, params: dict, x: torch.Tensor, detach_latent: bool
) -> torch.Tensor:
    enc = GradientOriginEncoder(nz=3, inner_norm=x.shape[0])

    class Bound(nn.Module):
        def forward(self, z):
            return functional_call(decoder, params, (z,))

    bound = Bound()
    z = enc(x, bound, create_graph=True)
    if detach_latent:
        z = z.detach()
    return gon_training_loss(bound(z), x)


def test_decoder_gradient_through_the_latent_step_matches_finite_differences():
    torch.manual_seed(0)
    decoder = tiny_decoder().double()
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64)
    names = [n for n, _ in decoder.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for p in decoder.parameters())

    def f(*flat):
        return _outer_loss(decoder, dict(zip(names, flat, strict=True)), x, detach_latent=False)

    assert torch.autograd.gradcheck(f, values, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_second_order_path_changes_the_decoder_gradient():
    """If z were detached (no gradient through the step), D's gradient would be different."""
    torch.manual_seed(0)
    decoder = tiny_decoder().double()
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64)
    params = dict(decoder.named_parameters())
    through = torch.autograd.grad(_outer_loss(decoder, params, x, False), list(params.values()))
    detached = torch.autograd.grad(_outer_loss(decoder, params, x, True), list(params.values()))
    diff = sum((a - b).abs().sum() for a, b in zip(through, detached, strict=True))
    assert diff > 1e-6


def test_conv_gon_training_step_reaches_every_decoder_parameter():
    torch.manual_seed(0)
    model = build_model("gon", nz=4, ngf=2, inner_norm=8)
    model.train()
    x = torch.rand(8, 1, 32, 32)
    _, x_hat = model(x)
    gon_training_loss(x_hat, x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


def test_latent_is_detached_in_evaluation():
    model = build_model("gon", nz=4, ngf=2).eval()
    with torch.no_grad():
        z, x_hat = model(torch.rand(3, 1, 32, 32))
    assert not z.requires_grad and not x_hat.requires_grad


def test_k_step_gon_with_k1_equals_gon_and_k2_equals_two_explicit_steps():
    torch.manual_seed(0)
    decoder = tiny_decoder().eval()
    x = torch.rand(6, 1, 4, 4)
    one = GradientOriginEncoder(nz=3, steps=1, inner_norm=6)(x, decoder, create_graph=False)
    z = torch.zeros(6, 3, 1, 1, requires_grad=True)
    inner = lambda z: ((decoder(z) - x) ** 2).sum(1).mean()  # noqa: E731  GON.py's loss
    (g1,) = torch.autograd.grad(inner(z), z)
    torch.testing.assert_close(one, -g1)
    z1 = (-g1).requires_grad_(True)
    (g2,) = torch.autograd.grad(inner(z1), z1)
    two = GradientOriginEncoder(nz=3, steps=2, inner_norm=6)(x, decoder, create_graph=False)
    torch.testing.assert_close(two, z1.detach() - g2)


def test_unknown_method_is_refused_with_the_list():
    with pytest.raises(
        ValueError, match="allowed: \\['gon', 'ae', 'ae_linear', 'gfe', 'gfe2', 'gfe_adaptive'\\]"
    ):
        build_model("vae", nz=4)


def test_latent_model_is_an_nn_module_with_decoder_and_encoder():
    model = build_model("ae", nz=4, ngf=2)
    assert isinstance(model, LatentModel)
    z, x_hat = model(torch.rand(2, 1, 32, 32))
    assert z.shape == (2, 4, 1, 1) and x_hat.shape == (2, 1, 32, 32)
