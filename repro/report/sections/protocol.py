"""The protocol-differences section: how this run's protocol departs from the published one.

Every sentence is derived from params and the published protocol in ``claims.yaml``, never
typed (the published facts are collected in docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from repro.config import (
    EfficiencyConfig,
    EvaluateConfig,
    GFEConfig,
    ModelConfig,
    Params,
    TrainConfig,
)
from repro.report.formatting import fmt_list
from repro.report.loaders import load_claims


def protocol_values(claims: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The published protocol constants (claims.yaml ``protocol``) by name."""
    claims = claims if claims is not None else load_claims()
    return {k: v["value"] for k, v in claims["protocol"].items()}


def protocol_differences(
    params: Params,
    claims: Mapping[str, Any] | None = None,
    *,
    resize_methods: Sequence[str] = (),
) -> list[str]:
    """How this run's protocol differs from the published one, one sentence per difference.

    Derived from params and the published protocol in claims.yaml, never typed, so a change of
    profile changes the list. Items about evaluation are always present: the original code has
    no held-out evaluation at all, so anything we measure on test data is a difference.
    ``resize_methods`` are the resize descriptions recorded in the data manifests.
    """
    pub = protocol_values(claims)
    train, model = params.train, params.model
    out = _training_differences(pub, train, model)
    out += _evaluation_differences(train, params.evaluate)
    size = params.data.image_size
    methods = sorted(set(resize_methods))
    how = f" with {'; '.join(methods)}" if methods else " (resize method not recorded)"
    out.append(f"Resize: images are resized to {size}×{size}{how}; GON.py used {pub['resize']}.")
    optional = (
        ("Learning rate", train.lr, pub["lr"]),
        ("Activation", model.activation, pub["activation"]),
        ("Batch size", train.batch_size, pub["batch_size"]),
        ("GON latent gradient steps", train.gon_steps, pub["gon_steps"]),
    )
    out.extend(
        f"{label}: {ours} here vs {published} in GON.py."
        for label, ours, published in optional
        if ours != published
    )
    out.extend(_gfe_differences(params.efficiency, params.gfe, size))
    return out


def _training_differences(
    pub: Mapping[str, Any], train: TrainConfig, model: ModelConfig
) -> list[str]:
    """Training length, training images, latent sizes and seeds vs GON.py and Table 1 of the
    reproducibility report (docs/protocol.md §1, §2)."""
    out: list[str] = []
    epochs, train_images = train.epochs, train.train_images
    steps_images = pub["gon_py_steps"] * pub["batch_size"]
    out.append(
        f"Training length: {epochs} epochs here; Table 1 of the reproducibility report used "
        f"{pub['table1_epochs']} epochs, and GON.py runs {pub['gon_py_steps']:,} optimiser steps "
        f"(not epochs): {steps_images:,} images at batch {pub['batch_size']}, about "
        f"{steps_images / pub['train_images']:.2f} passes over {pub['train_images']:,} images."
    )
    if train_images != pub["train_images"]:
        out.append(
            f"Training images: {train_images:,} per epoch here vs {pub['train_images']:,} in the "
            "published training split."
        )
    nz = list(model.nz)
    missing_t1 = [v for v in pub["nz_table1"] if v not in nz]
    if sorted(nz) != sorted(pub["nz_gon_py"]) or missing_t1:
        out.append(
            f"Latent size: nz = {fmt_list(nz)} here; GON.py uses nz = {fmt_list(pub['nz_gon_py'])}, "
            f"Table 1 reports nz = {fmt_list(pub['nz_table1'])}"
            + (f" (not trained here: {fmt_list(missing_t1)})." if missing_t1 else ".")
        )
    seeds = list(train.seeds)
    out.append(
        f"Seeds: {len(seeds)} per configuration here (seeds {fmt_list(seeds)}), summarised as mean "
        f"and confidence interval; the published numbers are {pub['seeds']} run each, without error bars."
    )
    return out


def _evaluation_differences(train: TrainConfig, evaluate: EvaluateConfig) -> list[str]:
    """Held-out evaluation, its batching and the dropped last batch: the pitfalls of
    docs/protocol.md §5, which the original code never met (it has no held-out evaluation)."""
    train_images, batch_size = train.train_images, train.batch_size
    out = [
        "Held-out evaluation: losses are measured on the held-out test split (and validation), with "
        "BatchNorm in both running-statistics and batch-statistics mode. The original code never "
        "evaluated on held-out data (GON.py has no validation or test code; the reproducibility "
        "report's test code is not public), so neither mode is known to match theirs.",
        f"Evaluation batching: fixed evaluation batch size {evaluate.batch_size} and the GON "
        f"inner loss normalised by the training batch size ({batch_size}), so an image's latent "
        "does not depend on how many images share its batch.",
    ]
    if batch_size and train_images:
        dropped = train_images % batch_size
        effect = (
            f"{dropped} images left out per epoch"
            if dropped
            else "here it divides evenly, so no image is left out"
        )
        out.append(
            "Incomplete batches: the last incomplete training batch is dropped, so every step "
            f"sees the batch size GON.py's inner loss assumes ({train_images:,} images at batch "
            f"{batch_size}: {train_images // batch_size:,} full batches; {effect})."
        )
    return out


def _gfe_differences(eff: EfficiencyConfig, gfe: GFEConfig, image_size: int) -> list[str]:
    """Where the GFE studies depart from the GFE code (docs/protocol.md §4), from params."""
    out = []
    if eff.architecture == "mlp" and image_size != 28:
        out.append(
            f"GFE decoder: the GFE code's MLP (nz → 150 → 300 → 600 → 784 on 28×28 images) ends here in "
            f"{image_size}×{image_size} = {image_size * image_size:,} outputs, the study's resolution."
        )
    steps, batch = eff.steps, eff.batch_size
    out.append(
        f"GFE training length: {steps:,} steps of batch {batch} ({steps * batch:,} images seen) per run; "
        "the GFE code trains one epoch over 50,000 images."
    )
    if gfe.tau != 1e4:
        out.append(f"GFE flow horizon: τ = {gfe.tau:g} here vs 1e4 in the GFE code.")
    out.append(
        f"GFE evaluation: {eff.eval_images:,} held-out test images per evaluation point "
        "(the GFE code validates on held-out images of its own choice)."
    )
    return out
