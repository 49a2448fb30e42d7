"""What the stages write: the schema of each results file, shared by its writer, the report and
the tests.

One frozen dataclass per file kind; the JSON keys are the field names (``write_json`` sorts
them, so a file's bytes depend only on its values). :func:`read_record` refuses a file whose keys
or value types are not those of its kind, naming the file and the fix, so that a stale or foreign
``metrics.json`` stops the report with one line instead of a ``KeyError`` deep inside it.

Results are written apart from their provenance (seconds, MLflow run ids, the device), which
goes to a sibling file: :mod:`repro.result_files`.

    MainMetrics        runs/main/<dataset>-nz<nz>/<method>-s<seed>/metrics.json
    EfficiencyMetrics  runs/efficiency/<dataset>/<method>-n<size>-s<seed>/metrics.json
    StudyCellMetrics   runs/studies/<study>/<cell>/metrics.json
    DiagnosisMetrics   runs/diagnosis/<dataset>/gon_mlp.json
    EncodingMetrics    runs/encoding/<dataset>/summary.json
    VariationalMetrics runs/variational/<dataset>/<method>-s<seed>/metrics.json
    ImplicitMetrics    runs/implicit/<dataset>/<method>-s<seed>/metrics.json
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from repro.result_files import is_provenance, read_results_json, write_results_json

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
