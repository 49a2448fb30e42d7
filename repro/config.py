"""Typed, validated configuration: ``params.yaml`` is the single place every knob lives.

Each section of ``params.yaml`` maps to a frozen dataclass (:mod:`repro.config_schema`).
:func:`load_params` parses the file and rejects, before any work starts, an unknown (or
misspelt) key, a value of the wrong type and an out-of-range value, naming the key by its dotted
path and listing the allowed values. DVC reads the same file (``params:`` in ``dvc.yaml``), so
``dvc exp run -S train.epochs=3`` and a stage run by hand see the same, validated, configuration.

Profiles: ``profiles/<name>.yaml`` are complete parameter files; ``repro profile <name>`` copies
one (after validating it) over ``params.yaml``. ``params.yaml`` as committed is the ``quick``
profile.

This module is the public face of the configuration, and its entry points: everything other
modules, stage scripts and tests use is imported from here. The parts live in modules of one
concern each, so that each reads top to bottom:

=============================  ==================================================================
:mod:`repro.config_schema`     the frozen dataclasses (one per section), split sizes, ConfigError
:mod:`repro.config_parse`      reading YAML and building the dataclasses (unknown keys, types)
:mod:`repro.config_validate`   ranges and names that types cannot express, section by section
:mod:`repro.config_runs`       the params hash, flat params, and the run matrix (RunSpec)
=============================  ==================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.config_parse import build_dataclass, read_yaml
from repro.config_runs import RunSpec, flatten, params_sha256, run_spec
from repro.config_schema import (
    CIFAR10_SPLIT_SIZES,
    DEVICES,
    PROFILES,
    SPLIT_SIZES,
    SYNTHETIC_CHANNELS,
    ActivationStudyConfig,
    AdaptiveStepConfig,
    ConfigError,
    ConvergenceConfig,
    DataConfig,
    EfficiencyConfig,
    EvaluateConfig,
    GFEConfig,
    ImplicitConfig,
    LatentStudyConfig,
    ModelConfig,
    MultistepStudyConfig,
    Params,
    ReportConfig,
    StudiesConfig,
    TrackingConfig,
    TrainConfig,
    VariationalConfig,
    split_sizes,
)
from repro.config_validate import validate

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
    STUDIES,
    VARIATIONAL_METHODS,
)

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "BN_MODES",
    "CIFAR10_SPLIT_SIZES",
    "DATASETS",
    "DEVICES",
    "FLOW_LOSSES",
    "GRAD_MODES",
    "METHODS",
    "ODE_SOLVERS",
    "PROFILES",
    "SOURCES",
    "SPLIT_SIZES",
    "STUDIES",
    "VARIATIONAL_METHODS",
    "SYNTHETIC_CHANNELS",
    "ActivationStudyConfig",
    "AdaptiveStepConfig",
    "ConfigError",
    "ConvergenceConfig",
    "DataConfig",
    "EfficiencyConfig",
    "EvaluateConfig",
    "GFEConfig",
    "ImplicitConfig",
    "LatentStudyConfig",
    "ModelConfig",
    "MultistepStudyConfig",
    "Params",
    "ReportConfig",
    "RunSpec",
    "StudiesConfig",
    "TrackingConfig",
    "TrainConfig",
    "VariationalConfig",
    "flatten",
    "load_params",
    "params_from_dict",
    "params_sha256",
    "read_yaml",
    "run_spec",
    "split_sizes",
    "validate",
]


def params_from_dict(data: Any, source: str = "params", *, complete: bool = False) -> Params:
    """Build and validate :class:`Params`; errors are prefixed with ``source``.

    ``complete=False`` lets a partial mapping take the defaults (tests and overrides build
    params that way); files go through :func:`load_params`, which requires every key.
    """
    try:
        return validate(build_dataclass(Params, data if data is not None else {}, "", complete))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Parse and validate a params file; raise :class:`ConfigError` naming the bad key."""
    return params_from_dict(read_yaml(path), source=str(path), complete=True)
