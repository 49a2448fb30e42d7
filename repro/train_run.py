"""What one training run is: its model, the configuration that decides its result, its inputs.

Shared by the training loop (:mod:`repro.train`), the batched and timed variants of its step
(:mod:`repro.batched`, :mod:`repro.steptime`) and the data-efficiency study, so that all of
them build the same model from the same params and feed it the same floats.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import torch

from repro.config import GFEConfig, Params, RunSpec
from repro.encoders import LatentModel, build_model
from repro.names import GFE_METHODS


def gfe_options(method: str, gfe: GFEConfig, **extra: Any) -> dict[str, Any]:
    """:func:`repro.encoders.build_model`'s ``gfe`` option: the flow's settings (and ``extra``)
    for a GFE method, nothing for the others, whose runs do not depend on them."""
    return asdict(gfe) | extra if method in GFE_METHODS else {}


def model_options(params: Params, method: str) -> dict[str, Any]:
    """Keyword options of :func:`repro.encoders.build_model` for ``method`` from params (one
    place); the flow's settings go to the GFE methods only."""
    return {
        "ngf": params.model.ngf,
        "activation": params.model.activation,
        "steps": params.train.gon_steps,
        "step_size": params.train.gon_step_size,
        "learn_step_size": params.train.gon_learn_step_size,
        "inner_norm": params.train.batch_size,
        "gfe": gfe_options(method, params.gfe),
    }


def build_run_model(spec: RunSpec, params: Params, channels: int) -> LatentModel:
    """The (untrained) model of ``spec``: its method and latent size, the params' options."""
    return build_model(
        spec.method, nz=spec.nz, channels=channels, **model_options(params, spec.method)
    )


def run_config(spec: RunSpec, params: Params) -> dict[str, Any]:
    """Everything that determines a run's result; stored in checkpoints and the final model."""
    # The matrix lists (methods, seeds, nz) are left out: adding a seed must not invalidate the
    # runs that already exist. dvc.yaml declares the same keys as this stage's params.
    # train.workers is left out too: how a group shares the machine never changes a run's numbers;
    # so is train.lr_unchecked, a licence to run that changes nothing once granted.
    ignored = ("methods", "seeds", "workers", "lr_unchecked")
    train = {
        f.name: getattr(params.train, f.name) for f in fields(params.train) if f.name not in ignored
    }
    return {
        "run": asdict(spec),
        "model": {"ngf": params.model.ngf, "activation": params.model.activation, "nz": spec.nz},
        "train": train,
        "val_loss": {
            "batch_size": params.evaluate.batch_size,
            "bn_mode": params.evaluate.headline_bn,
        },
        "image_size": params.data.image_size,
    }


def to_unit_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [0, 1], as ``ToTensor()`` does."""
    return images_uint8.float().div_(255.0)
