"""The GON convolutional decoder, its mirrored encoder, and the activation registry.

Architecture as in ``GON.py`` of the public GON code (docs/protocol.md §1): a DCGAN-style stack of
``ConvTranspose2d`` with kernel 4, strides 1, 2, 2, 2 (padding 0, 1, 1, 1), channels
nz → 4·ngf → 2·ngf → ngf → C, BatchNorm + activation after the first three, Sigmoid at the end.
At nz = 32, ngf = 16, C = 1 the decoder has 74,321 parameters and the autoencoder (decoder plus
the mirrored encoder below) 148,673: the "half the parameters" claim of the GON abstract.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

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
