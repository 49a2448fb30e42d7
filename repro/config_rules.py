"""The primitives of config validation: each check and the wording of its error.

Every error names the dotted key (``train.lr``) and says what is allowed; for a name, the
allowed values in their registry order. :mod:`repro.config_validate` says which check applies
to which key.
"""

from __future__ import annotations

from typing import Any

from repro.config_schema import ConfigError, DataConfig, Params, split_sizes
from repro.names import DATASETS


def require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def one_of(values: list[str] | str, allowed: tuple[str, ...], key: str) -> None:
    for v in [values] if isinstance(values, str) else values:
        require(v in allowed, key, f"{v!r} is not allowed; allowed: {list(allowed)}")


def non_empty_unique(values: list[Any], key: str) -> None:
    require(len(values) > 0, key, "must not be empty")
    require(len(set(values)) == len(values), key, f"has duplicates: {values}")


def distinct_names(values: list[str], allowed: tuple[str, ...], key: str) -> None:
    """A non-empty list of distinct names, each one of ``allowed``."""
    non_empty_unique(values, key)
    one_of(values, allowed, key)


def positive(value: float, key: str) -> None:
    require(value > 0, key, f"must be > 0, got {value}")


def positives(section: object, prefix: str, keys: tuple[str, ...]) -> None:
    """Each of ``section``'s fields ``keys`` is > 0 (``prefix.key`` in the error)."""
    for key in keys:
        positive(getattr(section, key), f"{prefix}.{key}")


def at_least(values: list[int], minimum: int, key: str) -> None:
    """Each item of ``values`` is ``>= minimum``; the error names the item's index."""
    for i, v in enumerate(values):
        require(v >= minimum, f"{key}[{i}]", f"must be >= {minimum}, got {v}")


def within_split(
    value: int, key: str, dataset: str, split: str, data: DataConfig, note: str = ""
) -> None:
    """``value`` images fit in the ``split`` of ``dataset`` (``note`` ends the message)."""
    n = split_sizes(dataset, data)[split]
    require(0 < value <= n, key, f"{value} must be in 1..{n} (the {dataset} {split} split){note}")


# The learning rates this study admits without train.lr_unchecked: Adam and RMSprop on these
# per-image losses diverge well below 1 (a step of 1 moves every weight by ~1) and barely move
# below 1e-6 in the epochs any profile trains (docs/params.md).
LR_RANGE = (1e-6, 1.0)


def sane_lr(lr: float, key: str, p: Params) -> None:
    low, high = LR_RANGE
    require(
        p.train.lr_unchecked or low <= lr <= high,
        key,
        f"{lr} is outside the range this study admits [{low}, {high}] (above it the loss "
        "diverges, below it training barely moves); set train.lr_unchecked: true to run it anyway",
    )


def dataset_prepared(dataset: str, key: str, p: Params) -> None:
    """``dataset`` is one this study knows and one the data stage prepares."""
    one_of(dataset, DATASETS, key)
    require(
        dataset in p.data.datasets,
        key,
        f"{dataset!r} is not in data.datasets ({p.data.datasets}): its data stage must run",
    )
