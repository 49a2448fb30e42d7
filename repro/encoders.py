"""Ways to find a latent for an image: one registry, one small class per way.

Every entry maps ``(x, decoder)`` to a latent ``z`` of shape (B, nz, 1, 1). The decoder is shared;
what differs is how ``z`` is obtained:

* ``gon`` — Gradient Origin Networks (docs/protocol.md §1): ``k`` gradient steps on the inner
  loss from the origin, ``z_{i+1} = z_i − η ∇_z L(x, D(z_i))`` with ``z_0 = 0``. With
  ``k = 1, η = 1`` this is ``z = −∇_{z0} L`` of the paper. During training the steps are built
  with ``create_graph=True`` so the outer loss back-propagates into D *through* the gradient
  (second-order gradients).
* ``ae`` — the autoencoder baseline: an amortised encoder E (the decoder mirrored), ``z = E(x)``.
* ``ae_linear`` — the control of docs/protocol.md §5: an autoencoder whose encoder is one affine
  layer, the same kind of map a one-step GON computes (:class:`repro.models.LinearEncoder`).
* ``gfe``, ``gfe2``, ``gfe_adaptive`` — Gradient Flow Encoding (:mod:`repro.flows`): the end
  point of the first-order flow, the second-order (Nesterov) flow, or the adaptive-step solver.

New ways are a name in :data:`repro.names.METHODS` plus an entry of :data:`ENCODERS` (keyed from
those names); callers only name them. Decoder shapes likewise: :data:`repro.names.ARCHITECTURES`
and :data:`ARCHITECTURE_REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from repro.flows import FlowStats, GradientFlowEncoder
from repro.models import (
    ConvDecoder,
    ConvEncoder,
    LinearEncoder,
    MLPDecoder,
    MLPEncoder,
    SirenDecoder,
)
from repro.names import ARCHITECTURES, METHODS, registry


def sse_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over channels and pixels, one value per image: shape (B,)."""
    return (x_hat - x).pow(2).flatten(1).sum(1)


def gon_training_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The loss exactly as coded in GON.py: ``((x̂ − x)**2).sum(1).mean()``.

    Sum over channels, mean over batch *and pixels*: per-pixel MSE for one channel, i.e. the
    per-image SSE divided by H·W (1024 at 32×32). Used as the outer (training) loss for every
    method so that GON and AE optimise the same objective.
    """
    return (x_hat - x).pow(2).sum(1).mean()


class GradientOriginEncoder(nn.Module):
    """``steps`` differentiable gradient steps on the inner loss, starting at the origin.

    The inner loss of one image is its SSE divided by ``inner_norm · H · W``. With
    ``inner_norm`` equal to the training batch size this reproduces GON.py's batch-mean MSE
    gradient exactly for a full batch, while making an image's gradient independent of how many
    images share its batch (docs/protocol.md §5, "batch dependence": a batch-mean would rescale the
    latent of every image in a smaller last batch).

    ``learn_step_size`` makes the step size η one learned scalar (an ``nn.Parameter`` trained
    with the decoder); otherwise it is the fixed number given.
    """

    def __init__(
        self,
        nz: int,
        steps: int = 1,
        step_size: float = 1.0,
        inner_norm: int = 64,
        learn_step_size: bool = False,
    ):
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.nz, self.steps, self.inner_norm = nz, steps, inner_norm
        self.has_parameters = learn_step_size
        self.step_size: nn.Parameter | float = (
            nn.Parameter(torch.tensor(float(step_size))) if learn_step_size else float(step_size)
        )

    def inner_loss(self, decoder: nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pixels = x.shape[-1] * x.shape[-2]
        return sse_per_image(decoder(z), x).sum() / (self.inner_norm * pixels)

    def forward(self, x: torch.Tensor, decoder: nn.Module, create_graph: bool) -> torch.Tensor:
        z = torch.zeros(
            x.shape[0], self.nz, 1, 1, device=x.device, dtype=x.dtype, requires_grad=True
        )
        with torch.enable_grad():  # the latent is a gradient, even inside torch.no_grad()
            for _ in range(self.steps):
                (grad,) = torch.autograd.grad(
                    self.inner_loss(decoder, z, x), z, create_graph=create_graph
                )
                z = z - self.step_size * grad
        # Its cost in the units GFE reports (one gradient evaluation per step).
        self.last_stats = FlowStats(
            nfe=self.steps,
            accepted=self.steps,
            final_time=self.steps * float(torch.as_tensor(self.step_size).detach()),
        )
        return z if create_graph else z.detach()


class AmortisedEncoder(nn.Module):
    """The autoencoder's latent: one pass of a learned encoder, ``z = E(x)``."""

    has_parameters = True

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, decoder: nn.Module, create_graph: bool) -> torch.Tensor:
        return self.net(x)


class LatentModel(nn.Module):
    """A decoder plus a way to find latents: ``x ↦ (z, D(z))``."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The graph through the latent step is only needed when gradients will flow back into D.
        create_graph = self.training and torch.is_grad_enabled()
        z = self.encoder(x, self.decoder, create_graph=create_graph)
        return z, self.decoder(z)


@dataclass(frozen=True)
class Architecture:
    """What the decoder (and a mirrored encoder) look like: the GON conv stack, the GFE MLP or
    Implicit-GON.py's SIREN.

    ``ngf`` is the conv stack's base width; for ``siren`` it is the SIREN's hidden width.
    """

    kind: str = "conv"  # conv | mlp | siren
    nz: int = 32
    ngf: int = 16
    channels: int = 1
    image_size: int = 32
    activation: str = "elu"

    def decoder(self) -> nn.Module:
        return self._builders().decoder(self)

    def encoder(self) -> nn.Module:
        return self._builders().encoder(self)

    def _builders(self) -> ArchitectureBuilders:
        if self.kind not in ARCHITECTURE_REGISTRY:
            raise ValueError(f"unknown architecture {self.kind!r}; allowed: {list(ARCHITECTURES)}")
        return ARCHITECTURE_REGISTRY[self.kind]


@dataclass(frozen=True)
class ArchitectureBuilders:
    """How one architecture builds its decoder and the mirrored (autoencoder) encoder."""

    decoder: Callable[[Architecture], nn.Module]
    encoder: Callable[[Architecture], nn.Module]


def _image_shape(arch: Architecture) -> tuple[int, int, int]:
    return (arch.channels, arch.image_size, arch.image_size)


#: The implicit autoencoder's encoder width: the main study's conv encoder (GON.py's ngf = 16),
#: whatever the SIREN's width (``ngf`` of a ``siren`` architecture).
SIREN_AE_ENCODER_NGF = 16


def _siren_ae_encoder(arch: Architecture) -> nn.Module:
    """The implicit AE's encoder: :class:`repro.models.ConvEncoder` (32×32 images only)."""
    if arch.image_size != 32:
        raise ValueError(
            f"the implicit autoencoder's conv encoder takes 32x32 images, got {arch.image_size}"
        )
    return ConvEncoder(
        nz=arch.nz, ngf=SIREN_AE_ENCODER_NGF, channels=arch.channels, activation=arch.activation
    )


#: Decoder/encoder builders, keyed and ordered by :data:`repro.names.ARCHITECTURES`.
ARCHITECTURE_REGISTRY: dict[str, ArchitectureBuilders] = registry(
    "architecture",
    ARCHITECTURES,
    {
        "conv": ArchitectureBuilders(
            decoder=lambda a: ConvDecoder(
                nz=a.nz, ngf=a.ngf, channels=a.channels, activation=a.activation
            ),
            encoder=lambda a: ConvEncoder(
                nz=a.nz, ngf=a.ngf, channels=a.channels, activation=a.activation
            ),
        ),
        "mlp": ArchitectureBuilders(
            decoder=lambda a: MLPDecoder(a.nz, _image_shape(a), a.activation),
            encoder=lambda a: MLPEncoder(a.nz, _image_shape(a), a.activation),
        ),
        # Implicit GON (Bond-Taylor & Willcocks 2021, §3.3; Implicit-GON.py): the SIREN of width
        # ngf; its autoencoder is the conv encoder + the same SIREN (the public code has none).
        "siren": ArchitectureBuilders(
            decoder=lambda a: SirenDecoder(a.nz, _image_shape(a), hidden=a.ngf),
            encoder=_siren_ae_encoder,
        ),
    },
)


def _gon(arch: Architecture, **opts: Any) -> nn.Module:
    return GradientOriginEncoder(
        arch.nz,
        steps=opts.get("steps", 1),
        step_size=opts.get("step_size", 1.0),
        inner_norm=opts.get("inner_norm", 64),
        learn_step_size=opts.get("learn_step_size", False),
    )


def _ae(arch: Architecture, **opts: Any) -> nn.Module:
    return AmortisedEncoder(arch.encoder())


def _ae_linear(arch: Architecture, **opts: Any) -> nn.Module:
    shape = (arch.channels, arch.image_size, arch.image_size)
    return AmortisedEncoder(LinearEncoder(arch.nz, shape))


def _gfe(flow: str) -> Callable[..., nn.Module]:
    def make(arch: Architecture, **opts: Any) -> nn.Module:
        return GradientFlowEncoder(arch.nz, flow=flow, **opts.get("gfe", {}))

    return make


#: One entry per way of finding a latent, keyed and ordered by :data:`repro.names.METHODS`;
#: callers only ever name them.
ENCODERS: dict[str, Callable[..., nn.Module]] = registry(
    "method",
    METHODS,
    {
        "gon": _gon,
        "ae": _ae,
        "ae_linear": _ae_linear,
        "gfe": _gfe("first_order"),
        "gfe2": _gfe("second_order"),
        "gfe_adaptive": _gfe("adaptive_step"),
    },
)


def build_model(
    method: str,
    *,
    nz: int,
    ngf: int = 16,
    channels: int = 1,
    activation: str = "elu",
    architecture: str = "conv",
    image_size: int = 32,
    **opts: Any,
) -> LatentModel:
    """Decoder + the latent finder named ``method`` (a key of :data:`ENCODERS`)."""
    if method not in ENCODERS:
        raise ValueError(f"unknown method {method!r}; allowed: {list(ENCODERS)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; allowed: {list(ARCHITECTURES)}")
    arch = Architecture(architecture, nz, ngf, channels, image_size, activation)
    return LatentModel(ENCODERS[method](arch, **opts), arch.decoder())
