"""The GON convolutional decoder, its mirrored encoder, and the activation registry.

Architecture as in ``GON.py`` of the public GON code (docs/protocol.md §1): a DCGAN-style stack of
``ConvTranspose2d`` with kernel 4, strides 1, 2, 2, 2 (padding 0, 1, 1, 1), channels
nz → 4·ngf → 2·ngf → ngf → C, BatchNorm + activation after the first three, Sigmoid at the end.
At nz = 32, ngf = 16, C = 1 the decoder has 74,321 parameters and the autoencoder (decoder plus
the mirrored encoder below) 148,673: the "half the parameters" claim of the GON abstract.

Also the GFE code's MLP decoder and its mirror, and the SIREN of ``Implicit-GON.py``
(:class:`SirenDecoder`: an implicit representation, an image as a function of its coordinates).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from repro.names import ACTIVATIONS, registry

#: Activation factories, keyed and ordered by :data:`repro.names.ACTIVATIONS` (a name added to
#: only one of the two stops this import).
ACTIVATION_REGISTRY: dict[str, Callable[[], nn.Module]] = registry(
    "activation",
    ACTIVATIONS,
    {
        "elu": nn.ELU,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "tanh": nn.Tanh,
        "softplus": nn.Softplus,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
    },
)


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by its params name; unknown names are refused with the list."""
    try:
        return ACTIVATION_REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; allowed: {list(ACTIVATION_REGISTRY)}"
        ) from None


class ConvDecoder(nn.Module):
    """GON decoder D: latent (B, nz, 1, 1) → image (B, C, 32, 32) in [0, 1]."""

    def __init__(self, nz: int = 32, ngf: int = 16, channels: int = 1, activation: str = "elu"):
        super().__init__()
        self.nz, self.ngf, self.channels = nz, ngf, channels
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0),
            nn.BatchNorm2d(ngf * 4),
            make_activation(activation),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1),
            nn.BatchNorm2d(ngf * 2),
            make_activation(activation),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1),
            nn.BatchNorm2d(ngf),
            make_activation(activation),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvEncoder(nn.Module):
    """The decoder mirrored (Conv2d k=4, strides 2, 2, 2, 1; BN + activation; linear last layer).

    Image (B, C, 32, 32) → latent (B, nz, 1, 1). Used by the autoencoder baseline, which the
    public GON code does not include.
    """

    def __init__(self, nz: int = 32, ngf: int = 16, channels: int = 1, activation: str = "elu"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, ngf, 4, 2, 1),
            nn.BatchNorm2d(ngf),
            make_activation(activation),
            nn.Conv2d(ngf, ngf * 2, 4, 2, 1),
            nn.BatchNorm2d(ngf * 2),
            make_activation(activation),
            nn.Conv2d(ngf * 2, ngf * 4, 4, 2, 1),
            nn.BatchNorm2d(ngf * 4),
            make_activation(activation),
            nn.Conv2d(ngf * 4, nz, 4, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearEncoder(nn.Module):
    """One affine layer, image → latent: the control for GON's "no encoder" claim.

    A one-step GON's latent ``z = −∇_{z0} L(x, D(z0))`` at ``z0 = 0`` is an affine function of
    the image (docs/protocol.md §5): the loss is quadratic in ``x``, and ``D(0)`` does not depend
    on it.
    An autoencoder with this encoder has the same kind of encoder, but learned freely instead of
    tied to the decoder's Jacobian at the origin.
    """

    def __init__(self, nz: int = 32, image_shape: tuple[int, int, int] = (1, 32, 32)):
        super().__init__()
        c, h, w = image_shape
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, nz), nn.Unflatten(1, (nz, 1, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm affine weights included, running statistics not)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _hidden_layers(sizes: tuple[int, ...], activation: str) -> list[nn.Module]:
    """Flatten, then Linear + activation between each pair of consecutive ``sizes``."""
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), make_activation(activation)]
    return layers


class MLPDecoder(nn.Module):
    """The GFE code's decoder: nz → 150 → 300 → 600 → C·H·W with ELU, Sigmoid output.

    The GFE code maps 20 → … → 784 on 28×28 MNIST; here the output size follows the data
    (1024 at the study's 32×32), the one deviation from that setting.
    """

    def __init__(
        self,
        nz: int = 20,
        image_shape: tuple[int, int, int] = (1, 32, 32),
        activation: str = "elu",
        hidden: tuple[int, ...] = (150, 300, 600),
    ):
        super().__init__()
        self.nz, self.image_shape = nz, image_shape
        sizes = (nz, *hidden)
        layers = _hidden_layers(sizes, activation)
        layers += [
            nn.Linear(sizes[-1], image_shape[0] * image_shape[1] * image_shape[2]),
            nn.Sigmoid(),
            nn.Unflatten(1, image_shape),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPEncoder(nn.Module):
    """The MLP decoder mirrored (C·H·W → 600 → 300 → 150 → nz, ELU, linear last): the GFE code's AE."""

    def __init__(
        self,
        nz: int = 20,
        image_shape: tuple[int, int, int] = (1, 32, 32),
        activation: str = "elu",
        hidden: tuple[int, ...] = (600, 300, 150),
    ):
        super().__init__()
        sizes = (image_shape[0] * image_shape[1] * image_shape[2], *hidden)
        layers = _hidden_layers(sizes, activation)
        layers += [nn.Linear(sizes[-1], nz), nn.Unflatten(1, (nz, 1, 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


#: Implicit-GON.py's SIREN: 4 sine layers and ω₀ = 30 (Sitzmann et al., "Implicit Neural
#: Representations with Periodic Activation Functions", NeurIPS 2020, §3.2).
SIREN_LAYERS = 4
SIREN_OMEGA0 = 30.0


def siren_bound(fan_in: int, omega0: float, first: bool) -> float:
    """SIREN initialisation's half-width: U(−b, b) with b = 1/fan_in for the first layer and
    √(6/fan_in)/ω₀ otherwise (Sitzmann et al. 2020, §3.2 and supplement 1.5; Implicit-GON.py)."""
    return 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / omega0


class SineLayer(nn.Module):
    """``sin(ω₀ · (W x + b))``: ω₀ multiplies the pre-activation (Sitzmann et al. 2020, eq. 1).

    The weights are drawn as :func:`siren_bound` says; the bias keeps ``nn.Linear``'s default,
    as in Implicit-GON.py.
    """

    def __init__(
        self, in_features: int, out_features: int, omega0: float = SIREN_OMEGA0, first: bool = False
    ):
        super().__init__()
        self.omega0, self.first = omega0, first
        self.linear = nn.Linear(in_features, out_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        bound = siren_bound(self.linear.in_features, self.omega0, self.first)
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def scaled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ω₀W, ω₀b): ω₀ applied to the (small) weights rather than to every pre-activation,
        the same function with one fewer pass over the (B, pixels, width) activations."""
        return self.omega0 * self.linear.weight, self.omega0 * self.linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(F.linear(x, *self.scaled()))


def pixel_grid(size: int, device: torch.device | None = None) -> torch.Tensor:
    """The centres of a size×size grid of pixels in [−1, 1]², row-major: (size², 2) as (y, x).

    Pixel centres, not Implicit-GON.py's ``linspace(−1, 1, size)`` (which puts samples on the
    border): a coarser grid's pixel is then the mean of the finer pixels it covers at the same
    place, so one continuous image is sampled consistently at every resolution (super-resolution).
    """
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack((yy, xx), dim=-1).reshape(-1, 2)


class SirenDecoder(nn.Module):
    """Implicit-GON.py's decoder: a SIREN ``F([c, z])`` of a pixel's coordinates c and a latent z.

    Input: 2 coordinates concatenated with the latent; ``layers`` sine layers of width ``hidden``
    (:class:`SineLayer`, the first with the first-layer initialisation); a linear output layer to
    C channels (initialised like a hidden layer, as the code does; no output non-linearity).
    ``forward(z)`` with z (B, nz, 1, 1) renders (B, C, H, W) on its own ``image_shape`` grid;
    :meth:`render` samples the same continuous function on any size×size grid.
    """

    def __init__(
        self,
        nz: int = 32,
        image_shape: tuple[int, int, int] = (1, 32, 32),
        hidden: int = 256,
        layers: int = SIREN_LAYERS,
        omega0: float = SIREN_OMEGA0,
    ):
        super().__init__()
        if image_shape[1] != image_shape[2]:
            raise ValueError(f"SirenDecoder renders square images, got {image_shape}")
        self.nz, self.image_shape = nz, image_shape
        self.first = SineLayer(2 + nz, hidden, omega0, first=True)
        self.hidden = nn.Sequential(*(SineLayer(hidden, hidden, omega0) for _ in range(layers - 1)))
        self.out = nn.Linear(hidden, image_shape[0])
        self.omega0 = omega0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SIREN initialisation of every layer (the output layer's bound as a hidden layer's)."""
        for layer in (self.first, *self.hidden):
            layer.reset_parameters()
        self.out.reset_parameters()
        bound = siren_bound(self.out.in_features, self.omega0, first=False)
        nn.init.uniform_(self.out.weight, -bound, bound)

    def render(self, z: torch.Tensor, size: int) -> torch.Tensor:
        """Latents z (B, nz, 1, 1) → images (B, C, size, size) sampled at size×size pixel centres."""
        b = z.shape[0]
        coords = pixel_grid(size, z.device).to(z.dtype)
        w, bias = self.first.scaled()
        # W [c; z] + b computed as W_c c (once per pixel) + W_z z + b (once per image): the same
        # first layer as on the concatenation, without building a (B, size², 2 + nz) input.
        pre = (
            F.linear(coords, w[:, :2])[None]
            + F.linear(z.reshape(b, self.nz), w[:, 2:], bias)[:, None]
        )
        h = self.hidden(torch.sin(pre))
        return self.out(h).transpose(1, 2).reshape(b, self.image_shape[0], size, size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.render(z, self.image_shape[-1])
