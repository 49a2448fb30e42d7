"""Typed, validated configuration: ``params.yaml`` is the single place every knob lives.

Each section of ``params.yaml`` maps to a frozen dataclass below. :func:`load_params` parses the
file and rejects, before any work starts, an unknown (or misspelt) key, a value of the wrong type
and an out-of-range value, naming the key by its dotted path and listing the allowed values.
DVC reads the same file (``params:`` in ``dvc.yaml``), so ``dvc exp run -S train.epochs=3`` and a
stage run by hand see the same, validated, configuration.

Profiles: ``profiles/<name>.yaml`` are complete parameter files; ``repro profile <name>`` copies
one (after validating it) over ``params.yaml``. ``params.yaml`` as committed is the ``quick``
profile.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

# The names params may use, each family written once in repro.names (torch-free), from which the
# registries that implement them (repro.models, encoders, flows, evaluate, studies, data) are
# keyed. Re-exported here: other modules import them from repro.config.
from repro.names import (
    ACTIVATIONS,
    ARCHITECTURES,
    BN_MODES,
    DATASETS,
    FLOW_LOSSES,
    GRAD_MODES,
    METHODS,
    ODE_SOLVERS,
    SOURCES,
)
from repro.names import STUDIES as STUDIES  # re-exported: pipelines/study.py imports it here

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
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {list(get_args(tp))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        _, val_tp = get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            # YAML's .inf/.nan would pass every `> 0` check below and poison a run later.
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {_type_name(tp)} for {key}")  # a bug in this file


def _build(cls: type, data: Any, prefix: str, complete: bool = False) -> Any:
    """Build the dataclass ``cls`` from ``data``, checking every key and value.

    ``complete``: every key must be present. A params *file* is complete (profiles are complete
    files), so a key left out is an error rather than a silent dataclass default that may differ
    from the profile's value (the default of ``train.epochs`` is not the ``quick`` profile's).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{dotted}: unknown key.{hint} Allowed keys here: {names}")
    kwargs = {}
    for name in names:
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if complete:
                raise ConfigError(
                    f"{dotted}: missing; a params file must set every key "
                    f"(copy it from profiles/<name>.yaml). Keys here: {names}"
                )
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], dotted, complete)
        else:
            kwargs[name] = _coerce(data[name], tp, dotted)
    return cls(**kwargs)


def _require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _one_of(values: list[str] | str, allowed: tuple[str, ...], key: str) -> None:
    for v in [values] if isinstance(values, str) else values:
        _require(v in allowed, key, f"{v!r} is not allowed; allowed: {list(allowed)}")


def _non_empty_unique(values: list[Any], key: str) -> None:
    _require(len(values) > 0, key, "must not be empty")
    _require(len(set(values)) == len(values), key, f"has duplicates: {values}")


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


def validate(p: Params) -> Params:
    """Range and membership checks that types alone cannot express."""
    _one_of(p.profile, PROFILES, "profile")
    d, m, t, e = p.data, p.model, p.train, p.evaluate
    _non_empty_unique(d.datasets, "data.datasets")
    _one_of(d.datasets, DATASETS, "data.datasets")
    _non_empty_unique(d.sources, "data.sources")
    _one_of(d.sources, SOURCES, "data.sources")
    _require(d.image_size in (28, 32), "data.image_size", f"{d.image_size}; allowed: [28, 32]")
    # CIFAR-10 is natively 32x32, the decoder's output size: shrinking it to 28 would only lose
    # detail, so it is refused rather than silently resized.
    _require(
        d.image_size == 32 or "cifar10" not in d.datasets,
        "data.image_size",
        f"{d.image_size} is not allowed with cifar10 in data.datasets (CIFAR-10 is stored at its "
        "native 32x32); use 32 or remove cifar10",
    )
    _require(
        set(d.synthetic_sizes) == set(SPLIT_SIZES),
        "data.synthetic_sizes",
        f"needs exactly the keys {list(SPLIT_SIZES)}, got {list(d.synthetic_sizes)}",
    )
    for split, n in d.synthetic_sizes.items():
        _require(n > 0, f"data.synthetic_sizes.{split}", f"must be > 0, got {n}")
    _require(
        d.synthetic_channels in SYNTHETIC_CHANNELS,
        "data.synthetic_channels",
        f"{d.synthetic_channels}; allowed: {list(SYNTHETIC_CHANNELS)}",
    )

    _require(m.ngf > 0, "model.ngf", f"must be > 0, got {m.ngf}")
    _one_of(m.activation, ACTIVATIONS, "model.activation")
    _non_empty_unique(m.nz, "model.nz")
    for i, nz in enumerate(m.nz):
        _require(nz > 0, f"model.nz[{i}]", f"must be > 0, got {nz}")

    _non_empty_unique(t.methods, "train.methods")
    _one_of(t.methods, METHODS, "train.methods")
    _non_empty_unique(t.seeds, "train.seeds")
    for i, s in enumerate(t.seeds):
        _require(s >= 0, f"train.seeds[{i}]", f"must be >= 0, got {s}")
    _one_of(t.device, DEVICES, "train.device")
    _require(t.epochs > 0, "train.epochs", f"must be > 0, got {t.epochs}")
    _require(t.batch_size > 0, "train.batch_size", f"must be > 0, got {t.batch_size}")
    _require(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    _require(
        len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas),
        "train.betas",
        f"must be two numbers in [0, 1), got {t.betas}",
    )
    for name in d.datasets:
        sizes = split_sizes(name, d)
        n_train, n_val, n_test = sizes["train"], sizes["val"], sizes["test"]
        _require(
            0 < t.train_images <= n_train,
            "train.train_images",
            f"{t.train_images} must be in 1..{n_train} (the {name} train split)",
        )
        _require(
            0 < t.val_images <= n_val,
            "train.val_images",
            f"{t.val_images} must be in 1..{n_val} (the {name} val split)",
        )
        _require(
            0 < t.curve_images <= n_test,
            "train.curve_images",
            f"{t.curve_images} must be in 1..{n_test} (the {name} test split)",
        )
        _require(
            t.batch_size <= t.train_images,
            "train.batch_size",
            f"{t.batch_size} is larger than train.train_images={t.train_images}",
        )
    _require(t.gon_steps >= 1, "train.gon_steps", f"must be >= 1, got {t.gon_steps}")
    _require(t.gon_step_size > 0, "train.gon_step_size", f"must be > 0, got {t.gon_step_size}")
    _require(
        t.num_threads >= 0,
        "train.num_threads",
        f"must be >= 0 (0 = torch default), got {t.num_threads}",
    )
    _require(t.max_loss > 0, "train.max_loss", f"must be > 0, got {t.max_loss}")
    _require(
        not (t.cuda_graphs and t.device == "cpu"),
        "train.cuda_graphs",
        "needs a CUDA device but train.device is 'cpu'; set train.cuda_graphs: false",
    )
    _require(
        t.curve_points >= 0, "train.curve_points", f"must be >= 0 (0 = off), got {t.curve_points}"
    )
    _require(t.workers >= 0, "train.workers", f"must be >= 0 (0 = auto), got {t.workers}")

    _validate_gfe(p.gfe)
    _validate_efficiency(p)
    _validate_studies(p)

    _require(e.batch_size > 0, "evaluate.batch_size", f"must be > 0, got {e.batch_size}")
    _one_of(e.headline_bn, BN_MODES, "evaluate.headline_bn")
    _require(
        e.order_shuffles >= 1, "evaluate.order_shuffles", f"must be >= 1, got {e.order_shuffles}"
    )
    if e.val_images is not None:
        for name in d.datasets:
            n_val = split_sizes(name, d)["val"]
            _require(
                0 < e.val_images <= n_val,
                "evaluate.val_images",
                f"{e.val_images} must be in 1..{n_val} (the {name} val split) or null (all)",
            )
    _require(
        e.affinity_combinations >= 1,
        "evaluate.affinity_combinations",
        f"must be >= 1, got {e.affinity_combinations}",
    )
    _require(
        0 < p.report.confidence < 1,
        "report.confidence",
        f"must be in (0, 1), got {p.report.confidence}",
    )
    _require(
        p.report.convergence_threshold >= 1,
        "report.convergence_threshold",
        f"must be >= 1 (a multiple of the AE's final loss), got {p.report.convergence_threshold}",
    )
    _require(bool(p.tracking.experiment), "tracking.experiment", "must not be empty")
    return p


def _positive(value: float, key: str) -> None:
    _require(value > 0, key, f"must be > 0, got {value}")


def _validate_gfe(g: GFEConfig) -> None:
    _one_of(g.loss, FLOW_LOSSES, "gfe.loss")
    _one_of(g.solver, ODE_SOLVERS, "gfe.solver")
    _one_of(g.grad_mode, GRAD_MODES, "gfe.grad_mode")
    for key in ("alpha", "tau", "rtol", "atol", "step_size", "max_nfe"):
        _positive(getattr(g, key), f"gfe.{key}")
    a = g.adaptive
    for key in (
        "h0",
        "h_max",
        "sigma",
        "h_min",
        "jump",
        "early_stop_fraction",
        "slope_tol",
        "window",
    ):
        _positive(getattr(a, key), f"gfe.adaptive.{key}")
    _require(a.growth >= 1, "gfe.adaptive.growth", f"must be >= 1, got {a.growth}")
    _require(0 < a.shrink < 1, "gfe.adaptive.shrink", f"must be in (0, 1), got {a.shrink}")
    _require(a.h0 <= a.h_max, "gfe.adaptive.h0", f"{a.h0} exceeds gfe.adaptive.h_max={a.h_max}")


def _validate_efficiency(p: Params) -> None:
    f, c = p.efficiency, p.convergence
    _one_of(f.dataset, DATASETS, "efficiency.dataset")
    _require(
        f.dataset in p.data.datasets,
        "efficiency.dataset",
        f"{f.dataset!r} is not in data.datasets ({p.data.datasets})",
    )
    _non_empty_unique(f.methods, "efficiency.methods")
    _one_of(f.methods, METHODS, "efficiency.methods")
    _one_of(f.architecture, ARCHITECTURES, "efficiency.architecture")
    _one_of(f.loss, FLOW_LOSSES, "efficiency.loss")
    _non_empty_unique(f.train_sizes, "efficiency.train_sizes")
    _non_empty_unique(f.seeds, "efficiency.seeds")
    sizes = split_sizes(f.dataset, p.data)
    n_train, n_test = sizes["train"], sizes["test"]
    for i, n in enumerate(f.train_sizes):
        _require(
            f.batch_size <= n <= n_train,
            f"efficiency.train_sizes[{i}]",
            f"{n} must be in {f.batch_size}..{n_train} (batch size .. the {f.dataset} train split)",
        )
    for key in ("nz", "steps", "batch_size", "lr", "eval_images", "eval_points"):
        _positive(getattr(f, key), f"efficiency.{key}")
    _require(
        f.eval_images <= n_test,
        "efficiency.eval_images",
        f"{f.eval_images} exceeds the test split ({n_test})",
    )
    _require(
        c.method in f.methods,
        "convergence.method",
        f"{c.method!r} is not one of efficiency.methods {f.methods} (its decoder is the one measured)",
    )
    _require(
        c.train_size in f.train_sizes,
        "convergence.train_size",
        f"{c.train_size} is not one of efficiency.train_sizes {f.train_sizes}",
    )
    _require(
        c.seed in f.seeds, "convergence.seed", f"{c.seed} is not one of efficiency.seeds {f.seeds}"
    )
    for key in ("images", "iterations", "step_size"):
        _positive(getattr(c, key), f"convergence.{key}")
    _require(
        c.images <= n_test, "convergence.images", f"{c.images} exceeds the test split ({n_test})"
    )


def _split_size(p: Params, dataset: str, split: str) -> int:
    return split_sizes(dataset, p.data)[split]


def _validate_studies(p: Params) -> None:
    s = p.studies
    datasets = {"studies.dataset": [s.dataset]}
    datasets["studies.latent.datasets"] = s.latent.datasets
    for key, names in datasets.items():
        _non_empty_unique(names, key)
        _one_of(names, DATASETS, key)
        for name in names:
            _require(
                name in p.data.datasets,
                key,
                f"{name!r} is not in data.datasets ({p.data.datasets}): its data stage must run",
            )
            n_train = _split_size(p, name, "train")
            _require(
                p.train.batch_size <= s.train_images <= n_train,
                "studies.train_images",
                f"{s.train_images} must be in {p.train.batch_size}..{n_train} "
                f"(train.batch_size .. the {name} train split)",
            )
            for part, split in (("test_images", "test"), ("curve_images", "test")):
                n = _split_size(p, name, split)
                value = getattr(s, part)
                _require(
                    0 < value <= n,
                    f"studies.{part}",
                    f"{value} must be in 1..{n} (the {name} {split} split)",
                )
    _non_empty_unique(s.seeds, "studies.seeds")
    for i, seed in enumerate(s.seeds):
        _require(seed >= 0, f"studies.seeds[{i}]", f"must be >= 0, got {seed}")
    _positive(s.epochs, "studies.epochs")
    _positive(s.nz, "studies.nz")
    if s.lr is not None:
        _positive(s.lr, "studies.lr")
    _require(
        s.curve_points >= 0,
        "studies.curve_points",
        f"must be >= 0 (0 = off), got {s.curve_points}",
    )
    conv_methods = ("gon", "ae", "ae_linear")  # the studies train the GON conv decoder
    a = s.activation
    _non_empty_unique(a.methods, "studies.activation.methods")
    _one_of(a.methods, conv_methods, "studies.activation.methods")
    _non_empty_unique(a.activations, "studies.activation.activations")
    _one_of(a.activations, ACTIVATIONS, "studies.activation.activations")
    _require(
        a.reference in a.activations,
        "studies.activation.reference",
        f"{a.reference!r} is not one of studies.activation.activations {a.activations}",
    )
    m = s.multistep
    _non_empty_unique(m.steps, "studies.multistep.steps")
    for i, k in enumerate(m.steps):
        _require(k >= 1, f"studies.multistep.steps[{i}]", f"must be >= 1, got {k}")
    _positive(m.step_size, "studies.multistep.step_size")
    lat = s.latent
    _non_empty_unique(lat.methods, "studies.latent.methods")
    _one_of(lat.methods, conv_methods, "studies.latent.methods")
    _non_empty_unique(lat.nz, "studies.latent.nz")
    for i, nz in enumerate(lat.nz):
        _require(nz > 0, f"studies.latent.nz[{i}]", f"must be > 0, got {nz}")
    if lat.seeds is not None:
        _non_empty_unique(lat.seeds, "studies.latent.seeds")
        _require(
            set(lat.seeds) <= set(s.seeds),
            "studies.latent.seeds",
            f"{lat.seeds} must be a subset of studies.seeds {s.seeds} (paired comparisons)",
        )


def params_from_dict(data: Any, source: str = "params", *, complete: bool = False) -> Params:
    """Build and validate :class:`Params`; errors are prefixed with ``source``.

    ``complete=False`` lets a partial mapping take the defaults (tests and overrides build
    params that way); files go through :func:`load_params`, which requires every key.
    """
    try:
        return validate(_build(Params, data if data is not None else {}, "", complete))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _refuse_duplicate_keys(node: yaml.Node | None, prefix: str, path: Path) -> None:
    """Raise on a key given twice in one mapping, naming its dotted key and both lines.

    PyYAML keeps the last of two equal keys without a word, so an edit that adds
    ``epochs: 0`` above an existing ``epochs: 2`` would otherwise be silently ignored.
    """
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{path}: {dotted}: duplicate key (lines {seen[key]} and {line}); "
                    "YAML would silently keep the last one: delete one of them"
                )
            seen[key] = line
            _refuse_duplicate_keys(value_node, dotted, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{prefix}[{i}]", path)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: file not found (run from the repository root, or pass the path)"
        )
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, column "
            f"{column}); save the file as UTF-8"
        ) from None
    loader = yaml.SafeLoader(text)
    loader.name = str(path)  # PyYAML's locations then name the file, not "<unicode string>"
    try:
        node = loader.get_single_node()
        _refuse_duplicate_keys(node, "", path)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: YAML syntax error: {err}") from None
    finally:
        loader.dispose()


def load_params(path: str | Path = "params.yaml") -> Params:
    """Parse and validate a params file; raise :class:`ConfigError` naming the bad key."""
    return params_from_dict(read_yaml(path), source=str(path), complete=True)


def params_sha256(p: Params) -> str:
    """A stable hash of the effective configuration (tags MLflow runs, printed in the report)."""
    blob = json.dumps(p.to_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` → ``{"train.lr": 1e-4}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


@dataclass(frozen=True)
class RunSpec:
    """One trained model: a cell of the dataset × method × nz × seed matrix in ``dvc.yaml``."""

    dataset: str
    method: str
    nz: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}-nz{self.nz}-s{self.seed}"

    @property
    def group(self) -> str:
        """The group directory ``<dataset>-nz<nz>``; its stage ``train@<dataset>-<nz>`` trains all
        methods × seeds."""
        return f"{self.dataset}-nz{self.nz}"

    @property
    def relative_dir(self) -> Path:
        """``main/<dataset>-nz<nz>/<method>-s<seed>``: the run's place under runs/ and models/."""
        return Path("main") / self.group / f"{self.method}-s{self.seed}"

    def run_dir(self, root: str | Path = "runs") -> Path:
        """Committed results: ``runs/main/<dataset>-nz<nz>/<method>-s<seed>/``."""
        return Path(root) / self.relative_dir

    def model_dir(self, root: str | Path = "models") -> Path:
        """DVC-cached ``model.pt`` and the resume ``checkpoint.pt``: same layout under models/."""
        return Path(root) / self.relative_dir


def run_spec(p: Params, dataset: str, method: str, nz: int, seed: int) -> RunSpec:
    """Check that a stage's matrix cell is one that ``params.yaml`` lists."""
    for key, value, allowed in (
        ("data.datasets", dataset, p.data.datasets),
        ("train.methods", method, p.train.methods),
        ("model.nz", nz, p.model.nz),
        ("train.seeds", seed, p.train.seeds),
    ):
        if value not in allowed:
            raise ConfigError(
                f"{key}: run asks for {value!r}, which params.yaml does not list ({allowed})"
            )
    return RunSpec(dataset, method, nz, seed)
