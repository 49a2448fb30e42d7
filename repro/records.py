"""What the stages write: the schema of each results file, shared by its writer, the report and
the tests.

One frozen dataclass per file kind; the JSON keys are the field names (``write_json`` sorts
them, so a file's bytes depend only on its values). :func:`read_record` refuses a file whose keys
or value types are not those of its kind, naming the file and the fix, so that a stale or foreign
``metrics.json`` stops the report with one line instead of a ``KeyError`` deep inside it.

**Results apart from provenance.** A file holds only what a reproduction should reproduce. The
facts about how a run went (wall-clock seconds, MLflow run ids, the device: :func:`is_provenance`)
are split off on writing into a sibling ``<name>.provenance<suffix>`` (``metrics.json`` →
``metrics.provenance.json``, ``curve.csv`` → ``curve.provenance.csv``, with the same nesting or
rows) and merged back on reading. The siblings are neither committed (``.gitignore``) nor part of
any DVC output's hash (``.dvcignore``), so a reproduction with equal results leaves ``git status``
and ``dvc.lock`` untouched; a results file read without its sibling has ``None`` for those facts.

    MainMetrics        runs/main/<dataset>-nz<nz>/<method>-s<seed>/metrics.json
    EfficiencyMetrics  runs/efficiency/<dataset>/<method>-n<size>-s<seed>/metrics.json
    StudyCellMetrics   runs/studies/<study>/<cell>/metrics.json
    DiagnosisMetrics   runs/diagnosis/<dataset>/gon_mlp.json
    EncodingMetrics    runs/encoding/<dataset>/summary.json
    VariationalMetrics runs/variational/<dataset>/<method>-s<seed>/metrics.json
    ImplicitMetrics    runs/implicit/<dataset>/<method>-s<seed>/metrics.json
"""

from __future__ import annotations

import csv
import dataclasses
import io
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from repro.io import atomic_write, read_json, write_json

if TYPE_CHECKING:
    import pandas as pd

# losses[bn_mode][split][metric] (main runs) or losses[split][bn_mode][metric] (study runs):
# metric is sse_per_image, mse_per_pixel or latent_norm (repro.evaluate).
LossTable = dict[str, dict[str, dict[str, float]]]
R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record:
    """Base of every results file: written and read only through this schema."""

    def write(self, path: str | Path) -> None:
        """The results to ``path``, the provenance to its sibling (see the module)."""
        write_results_json(path, asdict(self))

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
    train_seconds: float | None
    eval_seconds: float | None
    device: str | None
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
    wall_seconds: float | None
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
    device: str | None
    seeds: list[int]
    epochs: int
    train_images: int
    test_images: int
    train_seconds: float | None
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
    mlflow_run_id: str | None


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
    mlflow_run_id: str | None


@dataclass(frozen=True)
class VariationalMetrics(Record):
    """One model of the variational study (repro.variational): a variational GON or a VAE.

    ``test``: held-out bounds in nats per image (BCE summed over pixels, KL summed over latent
    dimensions, averaged over images): ``neg_elbo``, ``bce``, ``kl`` and ``neg_iwae`` (the
    importance-weighted bound with ``iw_samples`` samples; ≤ ``neg_elbo``). ``samples``: the
    sample scores of :mod:`repro.sample_scores` (``score``: the classifier score, higher is
    better; ``mmd2``: MMD² to held-out images, lower is better; ``relative_score``: the score
    between the pixel-Gaussian floor, 0, and the held-out images, 1), each of ``sample_images``
    samples per way of sampling: ``direct``, z̃ ~ N(0, I) fed straight to the decoder as
    Variational-GON.py's ``sample()`` does — the model's own prior, since the KL pulls the
    decoder's input z̃ = μ + σε towards N(0, I); ``heads``, z ~ N(0, I) mapped through the μ/σ
    heads first (what "sampling with the heads" would be; not the trained prior); and
    ``pixel_gaussian``, independent per-pixel Gaussians fitted to the training images (the floor);
    and ``test_images``, the held-out images themselves (the ceiling).
    """

    run: str
    dataset: str
    method: str
    seed: int
    nz: int
    ngf: int
    n_params: int
    epochs: int
    train_images: int
    test_images: int
    iw_samples: int
    sample_images: int
    test: dict[str, float]
    samples: dict[str, dict[str, float]]
    final_train_loss: float
    train_seconds: float | None
    mlflow_run_id: str | None


@dataclass(frozen=True)
class ImplicitMetrics(Record):
    """One model of the implicit study (repro.implicit): GON or the AE with a SIREN decoder.

    ``test``: ``sse_per_image`` and ``mse_per_pixel`` of the held-out images at ``resolution``
    (the training resolution: full, or ``low_res`` for a super-resolution run), and
    ``mean_image_sse_per_image``, the loss of decoding every image as the mean training image.
    ``super_resolution`` (GON trained at ``low_res``, else None): ``decoded_sse_per_image`` (its
    held-out latents decoded on the full grid vs the true images) and ``bicubic_sse_per_image``
    (bicubic upsampling of the low-res input vs the same images).
    """

    run: str
    dataset: str
    method: str
    seed: int
    nz: int
    hidden: int
    n_params: int
    steps: int
    train_images: int
    test_images: int
    resolution: int
    test: dict[str, float]
    super_resolution: dict[str, float] | None
    train_seconds: float | None
    mlflow_run_id: str | None


# Facts about a run, not results of it: they differ between two runs of the same code on the same
# data (wall-clock time, the MLflow store's ids, where it ran), so a reproduction is not judged on
# them (repro.verify).
PROVENANCE_KEYS = frozenset({"mlflow_run_id", "mlflow_run_ids", "device"})


def is_provenance(key: str) -> bool:
    """True for a key or column that records how a run went, not what it found."""
    return key in PROVENANCE_KEYS or "seconds" in key


def provenance_path(path: str | Path) -> Path:
    """The sibling holding ``path``'s provenance: ``metrics.json`` → ``metrics.provenance.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.provenance{path.suffix}")


def is_provenance_file(path: str | Path) -> bool:
    return Path(path).stem.endswith(".provenance")


def split_provenance(obj: Any) -> tuple[Any, Any]:
    """``(results, provenance)`` of a JSON value: every provenance key, at any depth, moves to the
    second, which keeps the nesting (lists keep their length, ``None`` where nothing moved)."""
    if isinstance(obj, dict):
        results, provenance = {}, {}
        for key, value in obj.items():
            if is_provenance(key):
                provenance[key] = value
                continue
            results[key], inner = split_provenance(value)
            if inner is not None:
                provenance[key] = inner
        return results, provenance or None
    if isinstance(obj, list):
        pairs = [split_provenance(item) for item in obj]
        inner = [p for _, p in pairs]
        return [r for r, _ in pairs], inner if any(p is not None for p in inner) else None
    return obj, None


def merge_provenance(results: Any, provenance: Any) -> Any:
    """The inverse of :func:`split_provenance`."""
    if provenance is None:
        return results
    if isinstance(results, dict) and isinstance(provenance, dict):
        merged = dict(results)
        for key, value in provenance.items():
            nested = isinstance(value, (dict, list)) and key in results
            # a scalar also in the results (a file written before the split): the sibling's wins
            merged[key] = merge_provenance(results[key], value) if nested else value
        return merged
    if isinstance(results, list) and isinstance(provenance, list):
        if len(results) != len(provenance):
            raise ValueError(f"{len(results)} results but {len(provenance)} provenance items")
        return [merge_provenance(r, p) for r, p in zip(results, provenance, strict=True)]
    raise ValueError(f"provenance {type(provenance).__name__} does not fit the results")


def write_results_json(path: str | Path, obj: Any) -> None:
    """``obj``'s results to ``path`` and its provenance (if any) to the sibling file."""
    results, provenance = split_provenance(obj)
    write_json(path, results)
    side = provenance_path(path)
    if provenance is not None:
        write_json(side, provenance)
    else:
        side.unlink(missing_ok=True)


def read_results_json(path: str | Path) -> Any:
    """A results file with its provenance merged back in (when the sibling exists)."""
    side = provenance_path(path)
    results = read_json(path)
    if not side.is_file():
        return results
    try:
        return merge_provenance(results, read_json(side))
    except ValueError as err:
        raise ValueError(f"{side}: does not belong to {path} ({err}); delete it") from err


def write_rows(path: str | Path, rows: list[dict[str, Any]], fields: Iterable[str]) -> None:
    """``rows`` as a CSV with the header ``fields``; the provenance columns go to the sibling."""
    fields = list(fields)
    kept = [f for f in fields if not is_provenance(f)]
    moved = [f for f in fields if is_provenance(f)]
    side = provenance_path(path)
    for target, columns in ((Path(path), kept), (side, moved)):
        if target is side and not columns:
            side.unlink(missing_ok=True)
            continue
        with atomic_write(target, "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def read_frame(path: str | Path) -> pd.DataFrame:
    """:func:`read_rows` as a DataFrame (types inferred as ``pandas.read_csv`` does)."""
    import pandas as pd  # the report's reader; the training processes need no pandas

    frame = pd.read_csv(path)
    side = provenance_path(path)
    if side.is_file():
        extra = pd.read_csv(side)
        if len(extra) != len(frame):
            raise ValueError(f"{side}: {len(extra)} rows, {path} has {len(frame)}; delete it")
        frame = frame.join(extra)
    return frame


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """A CSV written by :func:`write_rows`, provenance columns merged back (values as text)."""
    path = Path(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    side = provenance_path(path)
    if side.is_file():
        extra = list(csv.DictReader(io.StringIO(side.read_text())))
        if len(extra) != len(rows):
            raise ValueError(f"{side}: {len(extra)} rows, {path} has {len(rows)}; delete it")
        rows = [r | e for r, e in zip(rows, extra, strict=True)]
    return rows


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
    """Read and check one results file; a file of another kind or version is refused by path.

    Its provenance comes from the sibling file; without one, the provenance fields are None."""
    path = Path(path)
    data = read_results_json(path)
    if isinstance(data, dict):
        names = (f.name for f in dataclasses.fields(kind))
        data = {n: None for n in names if is_provenance(n)} | data
    try:
        return from_dict(kind, data)
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: not a metrics file of this study ({type(err).__name__}: {err}); "
            "delete it and re-run its stage (dvc repro)"
        ) from err
