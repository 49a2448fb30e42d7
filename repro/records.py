"""What the stages write: the schema of each results file, shared by its writer, the report and
the tests.

One frozen dataclass per file kind; the JSON keys are the field names (``write_json`` sorts
them, so a file's bytes depend only on its values). :func:`read_record` refuses a file whose keys
or value types are not those of its kind, naming the file and the fix, so that a stale or foreign
``metrics.json`` stops the report with one line instead of a ``KeyError`` deep inside it.

    MainMetrics        runs/main/<dataset>-nz<nz>/<method>-s<seed>/metrics.json
    EfficiencyMetrics  runs/efficiency/<dataset>/<method>-n<size>-s<seed>/metrics.json
    StudyCellMetrics   runs/studies/<study>/<cell>/metrics.json
    DiagnosisMetrics   runs/diagnosis/<dataset>/gon_mlp.json
    EncodingMetrics    runs/encoding/<dataset>/summary.json
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from repro.io import read_json, write_json

# losses[bn_mode][split][metric] (main runs) or losses[split][bn_mode][metric] (study runs):
# metric is sse_per_image, mse_per_pixel or latent_norm (repro.evaluate).
LossTable = dict[str, dict[str, dict[str, float]]]
R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record:
    """Base of every results file: written and read only through this schema."""

    def write(self, path: str | Path) -> None:
        write_json(path, asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MainMetrics(Record):
    """One trained model of the main comparison, scored on the held-out splits (repro.groups)."""

    run: str
    dataset: str
    method: str
    nz: int
    seed: int
    activation: str
    n_params: int
    epochs: int
    train_images: int
    train_seconds: float
    eval_seconds: float
    device: str
    profile: str
    eval_batch_size: int
    val_images: int
    test_images: int
    curve_images: int
    headline_bn: str
    final_train_mse_per_pixel: float | None
    mlflow_run_id: str | None
    affinity_error: dict[str, float] | None
    losses: LossTable
    batch_order_spread: dict[str, float]
    running_order_spread: dict[str, float]


@dataclass(frozen=True)
class EfficiencyMetrics(Record):
    """One run of the GFE data-efficiency study (repro.efficiency); ``final`` = its curve's last row."""

    run: str
    dataset: str
    method: str
    train_size: int
    seed: int
    architecture: str
    nz: int
    loss: str
    steps: int
    batch_size: int
    eval_images: int
    n_params: int
    final: dict[str, Any]
    wall_seconds: float
    profile: str
    mlflow_run_id: str | None


@dataclass(frozen=True)
class StudyCellMetrics(Record):
    """One cell of an ablation study (repro.studies): a record per variant × seed in ``runs``.

    A run record is the variant's description (its study's own keys) plus its scores, or
    ``status: diverged`` with the error; the report reads it through ``StudyRun``.
    """

    study: str
    cell: str
    dataset: str
    profile: str
    device: str
    seeds: list[int]
    epochs: int
    train_images: int
    test_images: int
    train_seconds: float
    runs: list[dict[str, Any]]


@dataclass(frozen=True)
class DiagnosisMetrics(Record):
    """Why GON with the MLP decoder stays at the mean image (repro.diagnosis).

    ``rows``: one per variant × seed: ``variant``, ``seed``, ``latent_norm`` (mean ‖z‖ on the
    held-out images), ``test_sse_per_image`` (of D(z)), ``origin_sse_per_image`` (of D(0)) and
    ``step_size`` (η after training). ``inner_loss_divisor`` is n·H·W.
    """

    dataset: str
    method: str
    architecture: str
    train_size: int
    steps: int
    eval_images: int
    inner_loss_divisor: int
    variants: dict[str, str]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class EncodingMetrics(Record):
    """How close to optimal and how costly each method's encoding is (repro.encoding).

    ``rows``: one per method × seed of the data-efficiency study's largest training set:
    ``own_loss``/``own_sse_per_image`` (the method's latent), ``refined_*`` (that latent refined
    by the adaptive-step flow), ``gap_loss`` (own − refined), ``refine_nfe``, ``encode_nfe`` (the
    encode's gradient evaluations; the images are encoded together, each evaluation covering all
    of them, so it is also the count per image), ``encode_seconds_per_image``; GFE rows add
    ``random_start_loss`` and ``random_start_sse_per_image``.
    """

    dataset: str
    train_size: int
    eval_images: int
    loss: str
    random_start_seed: int
    rows: list[dict[str, Any]]


# Facts about a run, not results of it: they differ between two runs of the same code on the same
# data (wall-clock time, the MLflow store's ids, where it ran), so a reproduction is not judged on
# them (repro.verify).
PROVENANCE_KEYS = frozenset({"mlflow_run_id", "mlflow_run_ids", "device"})


def is_provenance(key: str) -> bool:
    """True for a key or column that records how a run went, not what it found."""
    return key in PROVENANCE_KEYS or "seconds" in key


def _accepts(hint: Any) -> tuple[type, ...]:
    """The runtime types a field's annotation allows (outer types only: dict, list, ...)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _accepts(arg))
    if hint is type(None):
        return (type(None),)
    if hint is float:
        return (float, int)
    if hint is Any:
        return (object,)
    return (typing.get_origin(hint) or hint,)


def from_dict(kind: type[R], data: Any) -> R:
    """``kind`` from a decoded JSON object; KeyError/TypeError name the key that is wrong."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(kind)
    names = [f.name for f in dataclasses.fields(kind)]
    missing = [n for n in names if n not in data]
    if missing:
        raise KeyError(f"missing key(s) {missing}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise KeyError(f"unknown key(s) {unknown}")
    for name in names:
        value, allowed = data[name], _accepts(hints[name])
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            raise TypeError(f"key {name!r} is {type(value).__name__}, expected {hints[name]}")
    return kind(**{n: data[n] for n in names})


def read_record(kind: type[R], path: str | Path) -> R:
    """Read and check one results file; a file of another kind or version is refused by path."""
    path = Path(path)
    try:
        return from_dict(kind, read_json(path))
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: not a metrics file of this study ({type(err).__name__}: {err}); "
            "delete it and re-run its stage (dvc repro)"
        ) from err
