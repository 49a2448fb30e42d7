"""The checks on a typed configuration that types alone cannot express: ranges, names, sizes.

:func:`validate` runs one validator per section of ``params.yaml`` and stops at the first
failure with a :class:`ConfigError` naming the dotted key and, for a name, the allowed values in
their registry order (``repro.names``: each family is written once, and the registries that
implement it are keyed from the same tuple). The sections are checked in file order, so a file
with several mistakes is always refused for the same one.

Image counts are checked against the split sizes of every dataset they are used with
(:func:`repro.config_schema.split_sizes`), so a count that fits MNIST but not CIFAR-10 is
refused here rather than by an index error halfway through a run.
"""

from __future__ import annotations

from pathlib import Path

from repro.config_rules import (
    at_least,
    dataset_prepared,
    distinct_names,
    non_empty_unique,
    one_of,
    positive,
    positives,
    require,
    sane_lr,
    within_split,
)
from repro.config_schema import (
    DEVICES,
    PROFILES,
    SPLIT_SIZES,
    SYNTHETIC_CHANNELS,
    DataConfig,
    EvaluateConfig,
    GFEConfig,
    ModelConfig,
    Params,
    split_sizes,
)
from repro.names import (
    ACTIVATIONS,
    ARCHITECTURES,
    BN_MODES,
    DATASETS,
    FLOW_LOSSES,
    GRAD_MODES,
    IMPLICIT_METHODS,
    MAIN_METHODS,
    METHODS,
    ODE_SOLVERS,
    SOURCES,
    VARIATIONAL_METHODS,
)


def validate(p: Params) -> Params:
    """Range and membership checks that types alone cannot express, section by section."""
    one_of(p.profile, PROFILES, "profile")
    _validate_data(p.data)
    _validate_mirror(p.data)
    _validate_model(p.model)
    _validate_train(p)
    _validate_gfe(p.gfe)
    _validate_efficiency(p)
    _validate_convergence(p)
    _validate_variational(p)
    _validate_implicit(p)
    _validate_studies(p)
    _validate_evaluate(p.evaluate, p.data)
    require(
        0 < p.report.confidence < 1,
        "report.confidence",
        f"must be in (0, 1), got {p.report.confidence}",
    )
    require(
        p.report.convergence_threshold >= 1,
        "report.convergence_threshold",
        f"must be >= 1 (a multiple of the AE's final loss), got {p.report.convergence_threshold}",
    )
    require(bool(p.tracking.experiment), "tracking.experiment", "must not be empty")
    return p


def _validate_mirror(d: DataConfig) -> None:
    """A mirror directory that is named must exist: else the data stage would fail later."""
    if d.mirror_dir:
        require(
            Path(d.mirror_dir).is_dir(),
            "data.mirror_dir",
            f"{d.mirror_dir!r} is not a directory (relative paths are from the repository "
            "root); create it, fix the path, or set data.mirror_dir: null",
        )


def _validate_data(d: DataConfig) -> None:
    distinct_names(d.datasets, DATASETS, "data.datasets")
    distinct_names(d.sources, SOURCES, "data.sources")
    require(d.image_size in (28, 32), "data.image_size", f"{d.image_size}; allowed: [28, 32]")
    # CIFAR-10 is natively 32x32, the decoder's output size: shrinking it to 28 would only lose
    # detail, so it is refused rather than silently resized.
    require(
        d.image_size == 32 or "cifar10" not in d.datasets,
        "data.image_size",
        f"{d.image_size} is not allowed with cifar10 in data.datasets (CIFAR-10 is stored at its "
        "native 32x32); use 32 or remove cifar10",
    )
    require(
        set(d.synthetic_sizes) == set(SPLIT_SIZES),
        "data.synthetic_sizes",
        f"needs exactly the keys {list(SPLIT_SIZES)}, got {list(d.synthetic_sizes)}",
    )
    for split, n in d.synthetic_sizes.items():
        positive(n, f"data.synthetic_sizes.{split}")
    require(
        d.synthetic_channels in SYNTHETIC_CHANNELS,
        "data.synthetic_channels",
        f"{d.synthetic_channels}; allowed: {list(SYNTHETIC_CHANNELS)}",
    )


def _validate_model(m: ModelConfig) -> None:
    positive(m.ngf, "model.ngf")
    one_of(m.activation, ACTIVATIONS, "model.activation")
    non_empty_unique(m.nz, "model.nz")
    for i, nz in enumerate(m.nz):
        positive(nz, f"model.nz[{i}]")


def _validate_train(p: Params) -> None:
    t = p.train
    # The main comparison is GON against the autoencoders on the conv decoder (GON's Table 1);
    # the GFE flows have their own studies (efficiency, convergence) and their own params.
    distinct_names(t.methods, MAIN_METHODS, "train.methods")
    non_empty_unique(t.seeds, "train.seeds")
    at_least(t.seeds, 0, "train.seeds")
    one_of(t.device, DEVICES, "train.device")
    positives(t, "train", ("epochs", "batch_size", "lr"))
    sane_lr(t.lr, "train.lr", p)
    require(
        len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas),
        "train.betas",
        f"must be two numbers in [0, 1), got {t.betas}",
    )
    for name in p.data.datasets:
        within_split(t.train_images, "train.train_images", name, "train", p.data)
        within_split(t.val_images, "train.val_images", name, "val", p.data)
        within_split(t.curve_images, "train.curve_images", name, "test", p.data)
        require(
            t.batch_size <= t.train_images,
            "train.batch_size",
            f"{t.batch_size} is larger than train.train_images={t.train_images}",
        )
    require(t.gon_steps >= 1, "train.gon_steps", f"must be >= 1, got {t.gon_steps}")
    positive(t.gon_step_size, "train.gon_step_size")
    require(
        t.num_threads >= 0,
        "train.num_threads",
        f"must be >= 0 (0 = torch default), got {t.num_threads}",
    )
    positive(t.max_loss, "train.max_loss")
    require(
        not (t.cuda_graphs and t.device == "cpu"),
        "train.cuda_graphs",
        "needs a CUDA device but train.device is 'cpu'; set train.cuda_graphs: false",
    )
    require(
        t.curve_points >= 0, "train.curve_points", f"must be >= 0 (0 = off), got {t.curve_points}"
    )
    require(t.workers >= 0, "train.workers", f"must be >= 0 (0 = auto), got {t.workers}")


def _validate_gfe(g: GFEConfig) -> None:
    one_of(g.loss, FLOW_LOSSES, "gfe.loss")
    one_of(g.solver, ODE_SOLVERS, "gfe.solver")
    one_of(g.grad_mode, GRAD_MODES, "gfe.grad_mode")
    positives(g, "gfe", ("alpha", "tau", "rtol", "atol", "step_size", "max_nfe"))
    a = g.adaptive
    positives(
        a,
        "gfe.adaptive",
        ("h0", "h_max", "sigma", "h_min", "jump", "early_stop_fraction", "slope_tol", "window"),
    )
    require(a.growth >= 1, "gfe.adaptive.growth", f"must be >= 1, got {a.growth}")
    require(0 < a.shrink < 1, "gfe.adaptive.shrink", f"must be in (0, 1), got {a.shrink}")
    require(a.h0 <= a.h_max, "gfe.adaptive.h0", f"{a.h0} exceeds gfe.adaptive.h_max={a.h_max}")


def _validate_efficiency(p: Params) -> None:
    f = p.efficiency
    dataset_prepared(f.dataset, "efficiency.dataset", p)
    distinct_names(f.methods, METHODS, "efficiency.methods")
    one_of(f.architecture, ARCHITECTURES, "efficiency.architecture")
    one_of(f.loss, FLOW_LOSSES, "efficiency.loss")
    non_empty_unique(f.train_sizes, "efficiency.train_sizes")
    non_empty_unique(f.seeds, "efficiency.seeds")
    sizes = split_sizes(f.dataset, p.data)
    n_train, n_test = sizes["train"], sizes["test"]
    for i, n in enumerate(f.train_sizes):
        require(
            f.batch_size <= n <= n_train,
            f"efficiency.train_sizes[{i}]",
            f"{n} must be in {f.batch_size}..{n_train} (batch size .. the {f.dataset} train split)",
        )
    positives(f, "efficiency", ("nz", "steps", "batch_size", "lr", "eval_images", "eval_points"))
    sane_lr(f.lr, "efficiency.lr", p)
    require(
        f.eval_images <= n_test,
        "efficiency.eval_images",
        f"{f.eval_images} exceeds the test split ({n_test})",
    )


def _validate_variational(p: Params) -> None:
    v = p.variational
    dataset_prepared(v.dataset, "variational.dataset", p)
    distinct_names(v.methods, VARIATIONAL_METHODS, "variational.methods")
    non_empty_unique(v.seeds, "variational.seeds")
    positives(
        v, "variational", ("nz", "ngf", "epochs", "batch_size", "lr", "iw_samples", "sample_images")
    )
    sane_lr(v.lr, "variational.lr", p)
    within_split(v.train_images, "variational.train_images", v.dataset, "train", p.data)
    within_split(v.test_images, "variational.test_images", v.dataset, "test", p.data)
    within_split(v.sample_images, "variational.sample_images", v.dataset, "test", p.data)
    require(
        v.batch_size <= v.train_images,
        "variational.batch_size",
        f"{v.batch_size} exceeds variational.train_images ({v.train_images})",
    )


def _validate_implicit(p: Params) -> None:
    m = p.implicit
    non_empty_unique(m.datasets, "implicit.datasets")
    for i, dataset in enumerate(m.datasets):
        dataset_prepared(dataset, f"implicit.datasets[{i}]", p)
        within_split(m.train_images, "implicit.train_images", dataset, "train", p.data)
        within_split(m.test_images, "implicit.test_images", dataset, "test", p.data)
    distinct_names(m.methods, IMPLICIT_METHODS, "implicit.methods")
    non_empty_unique(m.seeds, "implicit.seeds")
    positives(m, "implicit", ("nz", "hidden", "steps", "batch_size", "lr"))
    sane_lr(m.lr, "implicit.lr", p)
    require(
        2 <= m.low_res < p.data.image_size,
        "implicit.low_res",
        f"{m.low_res} must be in 2..{p.data.image_size - 1} (below data.image_size)",
    )
    require(
        m.batch_size <= m.train_images,
        "implicit.batch_size",
        f"{m.batch_size} exceeds implicit.train_images ({m.train_images})",
    )


def _validate_convergence(p: Params) -> None:
    """The measured decoder must be one the efficiency study trains (same method, size, seed)."""
    c, f = p.convergence, p.efficiency
    require(
        c.method in f.methods,
        "convergence.method",
        f"{c.method!r} is not one of efficiency.methods {f.methods} (its decoder is the one measured)",
    )
    require(
        c.train_size in f.train_sizes,
        "convergence.train_size",
        f"{c.train_size} is not one of efficiency.train_sizes {f.train_sizes}",
    )
    require(
        c.seed in f.seeds, "convergence.seed", f"{c.seed} is not one of efficiency.seeds {f.seeds}"
    )
    positives(c, "convergence", ("images", "iterations", "step_size"))
    n_test = split_sizes(f.dataset, p.data)["test"]
    require(
        c.images <= n_test, "convergence.images", f"{c.images} exceeds the test split ({n_test})"
    )


def _validate_studies(p: Params) -> None:
    s = p.studies
    _validate_study_datasets(p, "studies.dataset", [s.dataset])
    _validate_study_datasets(p, "studies.latent.datasets", s.latent.datasets)
    non_empty_unique(s.seeds, "studies.seeds")
    at_least(s.seeds, 0, "studies.seeds")
    positive(s.epochs, "studies.epochs")
    positive(s.nz, "studies.nz")
    if s.lr is not None:
        positive(s.lr, "studies.lr")
        sane_lr(s.lr, "studies.lr", p)
    require(
        s.curve_points >= 0,
        "studies.curve_points",
        f"must be >= 0 (0 = off), got {s.curve_points}",
    )
    a = s.activation
    non_empty_unique(a.methods, "studies.activation.methods")
    # The ablations compare GON with the autoencoders on the conv decoder (docs/protocol.md §2).
    one_of(a.methods, MAIN_METHODS, "studies.activation.methods")
    distinct_names(a.activations, ACTIVATIONS, "studies.activation.activations")
    require(
        a.reference in a.activations,
        "studies.activation.reference",
        f"{a.reference!r} is not one of studies.activation.activations {a.activations}",
    )
    non_empty_unique(s.multistep.steps, "studies.multistep.steps")
    at_least(s.multistep.steps, 1, "studies.multistep.steps")
    positive(s.multistep.step_size, "studies.multistep.step_size")
    _validate_latent_study(p)


def _validate_study_datasets(p: Params, key: str, names: list[str]) -> None:
    """The datasets a study trains on are prepared by the data stage and hold its image counts."""
    s = p.studies
    non_empty_unique(names, key)
    for name in names:
        dataset_prepared(name, key, p)
        n_train = split_sizes(name, p.data)["train"]
        require(
            p.train.batch_size <= s.train_images <= n_train,
            "studies.train_images",
            f"{s.train_images} must be in {p.train.batch_size}..{n_train} "
            f"(train.batch_size .. the {name} train split)",
        )
        within_split(s.test_images, "studies.test_images", name, "test", p.data)
        within_split(s.curve_images, "studies.curve_images", name, "test", p.data)


def _validate_latent_study(p: Params) -> None:
    s, lat = p.studies, p.studies.latent
    distinct_names(lat.methods, MAIN_METHODS, "studies.latent.methods")
    non_empty_unique(lat.nz, "studies.latent.nz")
    for i, nz in enumerate(lat.nz):
        positive(nz, f"studies.latent.nz[{i}]")
    if lat.seeds is not None:
        non_empty_unique(lat.seeds, "studies.latent.seeds")
        require(
            set(lat.seeds) <= set(s.seeds),
            "studies.latent.seeds",
            f"{lat.seeds} must be a subset of studies.seeds {s.seeds} (paired comparisons)",
        )


def _validate_evaluate(e: EvaluateConfig, d: DataConfig) -> None:
    positive(e.batch_size, "evaluate.batch_size")
    one_of(e.headline_bn, BN_MODES, "evaluate.headline_bn")
    require(
        e.order_shuffles >= 1, "evaluate.order_shuffles", f"must be >= 1, got {e.order_shuffles}"
    )
    if e.val_images is not None:
        for name in d.datasets:
            within_split(e.val_images, "evaluate.val_images", name, "val", d, " or null (all)")
    require(
        e.affinity_combinations >= 1,
        "evaluate.affinity_combinations",
        f"must be >= 1, got {e.affinity_combinations}",
    )
