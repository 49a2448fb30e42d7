"""The shape of ``params.yaml``: one frozen, typed dataclass per section, and the fixed sizes.

Each section of ``params.yaml`` maps to a dataclass below; :mod:`repro.config_parse` builds them
from the file, checking every key against these fields and every value against its annotation,
and :mod:`repro.config_validate` then checks the ranges that types alone cannot express. The
families of names a value may take (methods, activations, solvers, ...) are not written here:
they come from :mod:`repro.names`, which the registries implementing them are keyed from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from repro.names import ACTIVATIONS, SOURCES

DEVICES = ("auto", "cpu", "cuda")
PROFILES = ("quick", "paper", "gpu", "tiny")

# Split sizes of MNIST and Fashion-MNIST (train[:50000], val = train[50000:], test = t10k).
SPLIT_SIZES = {"train": 50_000, "val": 10_000, "test": 10_000}
# CIFAR-10 has 50,000 training images, not 60,000: val comes out of them (repro.data).
CIFAR10_SPLIT_SIZES = {"train": 45_000, "val": 5_000, "test": 10_000}
# Channels a synthetic image may have: 1 (like MNIST) or 3 (like CIFAR-10).
SYNTHETIC_CHANNELS = (1, 3)


class ConfigError(ValueError):
    """A params file that must not be run; the message names the dotted key and the fix."""


@dataclass(frozen=True)
class DataConfig:
    datasets: list[str] = field(default_factory=lambda: ["mnist", "fashion_mnist"])
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    mirror_dir: str | None = None
    raw_dir: str = "data/raw"
    image_size: int = 32
    synthetic_sizes: dict[str, int] = field(
        default_factory=lambda: {"train": 512, "val": 128, "test": 128}
    )
    synthetic_channels: int = 1


@dataclass(frozen=True)
class ModelConfig:
    ngf: int = 16
    activation: str = "elu"
    nz: list[int] = field(default_factory=lambda: [32])


@dataclass(frozen=True)
class TrainConfig:
    methods: list[str] = field(default_factory=lambda: ["gon", "ae"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    device: str = "auto"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-4
    # Admit a learning rate (train.lr, efficiency.lr, studies.lr) outside LR_RANGE; a run's
    # numbers do not depend on it, so it is not part of a run's identity (train_run.run_config).
    lr_unchecked: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    train_images: int = 50_000
    val_images: int = 2_000
    gon_steps: int = 1
    gon_step_size: float = 1.0
    gon_learn_step_size: bool = False
    num_threads: int = 1
    # Runs of one stage group trained at once: worker processes, each with num_threads threads
    # (0 = auto: one per CPU core on a CPU, 1 on a GPU; 1 = one after another in-process).
    workers: int = 0
    max_loss: float = 1e3
    # Held-out learning curve: test loss on the first curve_images test images at step 0 and at
    # curve_points roughly log-spaced optimiser steps up to the last (0 = off).
    curve_points: int = 12
    curve_images: int = 1_000
    tf32: bool = False  # TF32 matmuls/convolutions on a GPU (off: full float32, as on CPU)
    cuda_graphs: bool = False  # replay the fixed-shape step as one CUDA graph (GPU only)


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 64
    headline_bn: str = "batch"
    order_shuffles: int = 3
    affinity_combinations: int = 8
    val_images: int | None = None  # None: the whole val split (the test split is always whole)


@dataclass(frozen=True)
class AdaptiveStepConfig:
    """The GFE code's "distance optimisation" step (repro.flows.adaptive_step_flow)."""

    h0: float = 1.0
    h_max: float = 10.0
    sigma: float = 1e-5
    growth: float = 1.1
    shrink: float = 0.5
    h_min: float = 0.5**20
    jump: float = 10.0
    early_stop_fraction: float = 0.02
    window: int = 5
    slope_tol: float = 1e-5


@dataclass(frozen=True)
class GFEConfig:
    """How a GFE latent is found (docs/protocol.md §4; defaults follow the GFE code)."""

    loss: str = "bce"
    alpha: float = 1.0
    tau: float = 1e4
    solver: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-4
    step_size: float = 1.0
    grad_mode: str = "approximate"
    max_nfe: int = 2000
    adaptive: AdaptiveStepConfig = field(default_factory=AdaptiveStepConfig)


@dataclass(frozen=True)
class EfficiencyConfig:
    """The data-efficiency study: GFE vs GON vs AE trained on growing numbers of images.

    The GFE code's setting: MLP decoder, nz 20, RMSprop lr 5e-4 (alpha 0.9, eps 1e-6), batch 16,
    BCE; a fixed number of optimiser steps drawn from the first ``train_size`` training images.
    """

    dataset: str = "mnist"
    methods: list[str] = field(default_factory=lambda: ["gfe_adaptive", "gon", "ae"])
    architecture: str = "mlp"
    nz: int = 20
    train_sizes: list[int] = field(default_factory=lambda: [100, 1000])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 60
    batch_size: int = 16
    lr: float = 5e-4
    loss: str = "bce"
    eval_images: int = 256
    eval_points: int = 3


@dataclass(frozen=True)
class VariationalConfig:
    """Variational GON vs a VAE with the same decoder (Variational-GON.py's setting, reduced).

    The official code: conv decoder nz 48, ngf 32, BatchNorm, ELU, Sigmoid; BCE summed over pixels
    plus KL (weight 1); Adam 1e-4, batch 64, 300 epochs on MNIST. Here: ``epochs`` over the first
    ``train_images`` training images; ``test_images`` held-out images scored by the negative ELBO
    and an importance-weighted bound with ``iw_samples`` samples; ``sample_images`` prior samples
    per model for the sample-quality number.
    """

    dataset: str = "mnist"
    methods: list[str] = field(default_factory=lambda: ["vgon", "vae"])
    nz: int = 48
    ngf: int = 32
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train_images: int = 50_000
    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-4
    test_images: int = 10_000
    iw_samples: int = 64
    sample_images: int = 1_000


@dataclass(frozen=True)
class ImplicitConfig:
    """Implicit GON (a SIREN decoder) vs an implicit AE (conv encoder + the same SIREN).

    Implicit-GON.py: Fashion-MNIST 28×28, SIREN with ω₀ = 30, input 2 coordinates + a 32-d latent,
    4 hidden layers of 256, SSE per image averaged over the batch, Adam 1e-4, batch 64, 501 steps.
    ``hidden`` is the SIREN's width (its depth and ω₀ = 30 are the code's, fixed in
    :class:`repro.models.SirenDecoder`); ``steps`` optimiser steps over the first ``train_images``
    training images; ``test_images`` held-out images scored. Super-resolution: GON trained on
    images downsampled to ``low_res`` pixels a side, its held-out latents decoded on the full
    grid and compared with the true images and with bicubic upsampling of the low-res input.
    """

    datasets: list[str] = field(default_factory=lambda: ["fashion_mnist", "mnist"])
    methods: list[str] = field(default_factory=lambda: ["gon", "ae"])
    nz: int = 32
    hidden: int = 256
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 501
    batch_size: int = 64
    lr: float = 1e-4
    train_images: int = 50_000
    test_images: int = 1_000
    low_res: int = 16


@dataclass(frozen=True)
class ConvergenceConfig:
    """ℓ(z(t)) against solver iterations for a trained GFE decoder (the "faster per iteration" claim)."""

    method: str = "gfe_adaptive"
    train_size: int = 1000
    seed: int = 0
    images: int = 64
    iterations: int = 200
    step_size: float = 1.0


@dataclass(frozen=True)
class ActivationStudyConfig:
    methods: list[str] = field(default_factory=lambda: ["gon", "ae"])
    activations: list[str] = field(default_factory=lambda: list(ACTIVATIONS))
    reference: str = "elu"


@dataclass(frozen=True)
class MultistepStudyConfig:
    steps: list[int] = field(default_factory=lambda: [1, 2, 3, 5])
    step_size: float = 1.0
    learn_step_size: bool = False


@dataclass(frozen=True)
class LatentStudyConfig:
    datasets: list[str] = field(default_factory=lambda: ["mnist", "fashion_mnist"])
    methods: list[str] = field(default_factory=lambda: ["gon", "ae"])
    nz: list[int] = field(default_factory=lambda: [64, 128, 256])
    seeds: list[int] | None = None  # None: studies.seeds


@dataclass(frozen=True)
class StudiesConfig:
    """The ablation studies: activation function, k-step GON, latent size (docs/protocol.md §2).

    Every study trains the GON conv setting of ``model``/``train`` with the overrides below, on
    the first ``train_images`` training images for ``epochs`` epochs (the quick profile uses a
    subset so the whole pipeline fits its time budget, and ``lr`` can raise the learning rate so
    that a short run still reaches a trained regime; the report says so), with the same
    ``seeds`` everywhere so that comparisons can be paired; ``test_images`` held-out images are
    scored in both BatchNorm modes, and the held-out test loss on the first ``curve_images``
    test images is recorded at ``curve_points`` log-spaced optimiser steps (the curves).
    """

    dataset: str = "mnist"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 1
    train_images: int = 9_600
    lr: float | None = None  # None: train.lr
    nz: int = 32  # latent size of the activation and multistep studies
    test_images: int = 2_000
    curve_points: int = 8
    curve_images: int = 500
    activation: ActivationStudyConfig = field(default_factory=ActivationStudyConfig)
    multistep: MultistepStudyConfig = field(default_factory=MultistepStudyConfig)
    latent: LatentStudyConfig = field(default_factory=LatentStudyConfig)


@dataclass(frozen=True)
class ReportConfig:
    confidence: float = 0.95
    # Convergence speed: a run has converged once its validation loss is at most this multiple
    # of the autoencoder's final validation loss (same dataset and nz, mean over seeds).
    convergence_threshold: float = 1.1


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    experiment: str = "gon-repro"


@dataclass(frozen=True)
class Params:
    profile: str = "quick"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gfe: GFEConfig = field(default_factory=GFEConfig)
    efficiency: EfficiencyConfig = field(default_factory=EfficiencyConfig)
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)
    variational: VariationalConfig = field(default_factory=VariationalConfig)
    implicit: ImplicitConfig = field(default_factory=ImplicitConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_sizes(dataset: str, data: DataConfig) -> dict[str, int]:
    """Images per split of ``dataset``: what train/val/test image counts are checked against.

    Why one function: the data stage writes these sizes and training and the GFE studies read
    prefixes of them, so a count that fits MNIST's 50,000 training images but not CIFAR-10's
    45,000 must be refused here, before any work starts, not by an index error later.
    """
    if dataset == "synthetic":
        return dict(data.synthetic_sizes)
    if dataset == "cifar10":
        return dict(CIFAR10_SPLIT_SIZES)
    return dict(SPLIT_SIZES)
