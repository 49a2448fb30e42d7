"""The ablation studies: which variants a study trains, and how one is run and scored.

Three studies, each one DVC stage that trains all its *cells* as one group (:mod:`repro.engine`;
a cell trains every method of the study for every seed, so that the paired comparisons share
seeds):

* ``activation`` — GON and the AE with each activation (the reproducibility report's five plus
  SiLU and GELU); one cell per activation.
* ``multistep`` — GON with k differentiable gradient steps from the origin (k = 1 is GON); one
  cell per k.
* ``latent`` — GON and the AE at nz = 64, 128, 256 (the report's Table 1); one cell per
  dataset × nz.

A variant is the main training setting (``model``, ``train``) with a few overrides: the study's
training subset, epochs and curve settings from ``studies`` and the variant's own activation,
nz or k. Everything else — the loss, optimiser, resume, divergence guard — is :func:`repro.train.fit`.
Same seed ⇒ same initialisation and the same data order, whatever the variant.

A study's group, run by the stage or by any other caller: :func:`study_jobs` (the jobs),
:func:`repro.engine.run_group`, :func:`study_result` per outcome and :func:`write_study_results`
(each cell's ``metrics.json`` and ``curves.csv``); the stage adds the MLflow runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.config import ConfigError, Params, RunSpec
from repro.data import load_split
from repro.engine import Job, Outcome
from repro.errors import DivergenceError
from repro.evaluate import BN_MODES, loss_summary, per_image_scores
from repro.groups import step_cost
from repro.models import count_parameters
from repro.names import STUDIES, registry
from repro.records import StudyCellMetrics
from repro.result_files import write_rows
from repro.runtime import setup_device
from repro.train import fit
from repro.train_files import CURVE, CURVE_FIELDS, HISTORY, history_rows, load_trained

#: The columns of a cell's ``curves.csv`` that name the run of a row (then :data:`CURVE_FIELDS`).
CURVE_KEYS = ("label", "method", "activation", "nz", "steps", "seed")


@dataclass(frozen=True)
class Variant:
    """One trained configuration of a study (all its seeds share it)."""

    study: str
    dataset: str
    method: str
    nz: int
    activation: str
    steps: int = 1
    step_size: float = 1.0
    learn_step_size: bool = False

    @property
    def label(self) -> str:
        return f"{self.method}-{self.activation}-nz{self.nz}-k{self.steps}"

    def spec(self, seed: int) -> RunSpec:
        return RunSpec(self.dataset, self.method, self.nz, seed)

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"label": self.label}


def _check(value: Any, allowed: list[Any], key: str) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{key}: the stage asks for {value!r}, which params.yaml does not list ({allowed})"
        )


def cell_name(
    study: str,
    *,
    dataset: str,
    activation: str | None = None,
    steps: int | None = None,
    nz: int | None = None,
) -> str:
    """The directory name of one cell: ``mnist-elu``, ``mnist-k2``, ``mnist-nz64``, ``mnist``."""
    if study == "activation":
        return f"{dataset}-{activation}"
    if study == "multistep":
        return f"{dataset}-k{steps}"
    return f"{dataset}-nz{nz}"


def cell_variants(
    params: Params,
    study: str,
    *,
    dataset: str | None = None,
    activation: str | None = None,
    steps: int | None = None,
    nz: int | None = None,
) -> tuple[str, list[Variant]]:
    """The variants one DVC stage of ``study`` trains, checked against ``params.yaml``.

    Returns the cell's name (its output directory) and the variants, methods in params order.
    """
    s = params.studies
    base_activation = params.model.activation
    default_nz = s.nz
    if study == "activation":
        _check(activation, s.activation.activations, "studies.activation.activations")
        ds = s.dataset
        variants = [Variant(study, ds, m, default_nz, activation) for m in s.activation.methods]
    elif study == "multistep":
        _check(steps, s.multistep.steps, "studies.multistep.steps")
        ds = s.dataset
        m = s.multistep
        variants = [
            Variant(
                study, ds, "gon", default_nz, base_activation, steps, m.step_size, m.learn_step_size
            )
        ]
    elif study == "latent":
        _check(dataset, s.latent.datasets, "studies.latent.datasets")
        _check(nz, s.latent.nz, "studies.latent.nz")
        ds = dataset
        variants = [Variant(study, ds, m, nz, base_activation) for m in s.latent.methods]
    else:
        raise ConfigError(f"unknown study {study!r}; allowed: {list(STUDIES)}")
    name = cell_name(study, dataset=ds, activation=activation, steps=steps, nz=nz)
    return name, variants


def study_seeds(params: Params, study: str) -> list[int]:
    """The seeds a study trains: ``studies.seeds`` unless the study narrows them (a subset)."""
    if study == "latent" and params.studies.latent.seeds is not None:
        return list(params.studies.latent.seeds)
    return list(params.studies.seeds)


def variant_params(params: Params, variant: Variant) -> Params:
    """``params`` with the study's training subset and the variant's overrides applied."""
    s = params.studies
    train = dataclasses.replace(
        params.train,
        epochs=s.epochs,
        train_images=s.train_images,
        lr=params.train.lr if s.lr is None else s.lr,
        val_images=s.curve_images,
        curve_points=s.curve_points,
        curve_images=s.curve_images,
        gon_steps=variant.steps,
        gon_step_size=variant.step_size,
        gon_learn_step_size=variant.learn_step_size,
    )
    model = dataclasses.replace(params.model, activation=variant.activation, nz=[variant.nz])
    return dataclasses.replace(params, train=train, model=model)


def held_out_losses(
    model: nn.Module, images_uint8: torch.Tensor, *, batch_size: int
) -> dict[str, dict[str, float]]:
    """Mean SSE per image, MSE per pixel and latent norm, in both BatchNorm modes."""
    pixels = images_uint8.shape[-1] * images_uint8.shape[-2]
    out: dict[str, dict[str, float]] = {}
    for mode in BN_MODES:
        sse, z_norm = per_image_scores(model, images_uint8, batch_size=batch_size, bn_mode=mode)
        out[mode] = loss_summary(sse, pixels) | {"latent_norm": float(z_norm.mean())}
    return out


def learned_step_size(model: nn.Module) -> float | None:
    """The trained η of a GON whose step size was learned (None when it was fixed)."""
    step = getattr(model.encoder, "step_size", None)
    return float(step.detach()) if isinstance(step, nn.Parameter) else None


def score_variant(
    variant: Variant,
    seed: int,
    vparams: Params,
    *,
    run_dir: Path,
    splits: dict[str, torch.Tensor],
    summary: dict[str, Any],
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a trained variant and measure it on the held-out splits; one flat-ish record."""
    model, _ = load_trained(run_dir, variant.spec(seed), vparams, channels=splits["test"].shape[1])
    model.to(splits["test"].device)
    batch = vparams.evaluate.batch_size
    record = variant.describe() | {
        "seed": seed,
        "status": "ok",
        "n_params": count_parameters(model),
        "n_params_decoder": count_parameters(model.decoder),
        "learned_step_size": learned_step_size(model),
        "train_seconds": summary["train_seconds"],
        "seconds_per_epoch": summary["seconds_per_epoch"],
        "graph_bytes_per_step": summary["graph_bytes_per_step"],
        "cuda_peak_bytes": summary["cuda_peak_bytes"],
        "final_train_mse_per_pixel": summary["final_train_mse_per_pixel"],
        "final_val_mse_per_pixel": summary["final_val_mse_per_pixel"],
        "losses": {
            split: held_out_losses(model, imgs, batch_size=batch) for split, imgs in splits.items()
        },
    }
    return model, record


def failed_record(variant: Variant, seed: int, error: BaseException) -> dict[str, Any]:
    """A run that diverged stays in the results (as a failure), never silently dropped."""
    return variant.describe() | {"seed": seed, "status": "diverged", "error": str(error)}


def _activation_cells(params: Params) -> list[tuple[str, list[Variant]]]:
    return [
        cell_variants(params, "activation", activation=a)
        for a in params.studies.activation.activations
    ]


def _multistep_cells(params: Params) -> list[tuple[str, list[Variant]]]:
    return [cell_variants(params, "multistep", steps=k) for k in params.studies.multistep.steps]


def _latent_cells(params: Params) -> list[tuple[str, list[Variant]]]:
    s = params.studies
    return [
        cell_variants(params, "latent", dataset=d, nz=nz)
        for d in s.latent.datasets
        for nz in s.latent.nz
    ]


#: Each study's cells (its builder), keyed and ordered by :data:`repro.names.STUDIES`.
STUDY_CELLS = registry(
    "study",
    STUDIES,
    {"activation": _activation_cells, "multistep": _multistep_cells, "latent": _latent_cells},
)


def study_cells(params: Params, study: str) -> list[tuple[str, list[Variant]]]:
    """Every cell of ``study`` as :func:`cell_variants` names it: the whole study's one stage."""
    if study not in STUDY_CELLS:
        raise ConfigError(f"unknown study {study!r}; allowed: {list(STUDIES)}")
    return STUDY_CELLS[study](params)


@dataclass(frozen=True)
class StudyPlan:
    """A study's group: its cells (params order), seeds and one job per cell × variant × seed."""

    study: str
    cells: list[tuple[str, list[Variant]]]
    seeds: list[int]
    jobs: list[Job]


def job_name(study: str, cell: str, label: str, seed: int) -> str:
    """``<study>/<cell>/<variant label>-s<seed>``: one run's job (and MLflow run) name."""
    return f"{study}/{cell}/{label}-s{seed}"


def study_jobs(params: Params, study: str, root: Path) -> StudyPlan:
    """Every run of ``study`` as a :func:`study_run` job, in params order."""
    cells = study_cells(params, study)
    seeds = study_seeds(params, study)
    jobs = []
    for cell, variants in cells:
        for variant in variants:
            vparams = variant_params(params, variant)
            for seed in seeds:
                jobs.append(
                    Job(
                        job_name(study, cell, variant.label, seed),
                        study_run,
                        {
                            "variant": variant,
                            "seed": seed,
                            "vparams": vparams,
                            "root": root,
                            "study": study,
                            "cell": cell,
                        },
                        step_cost(variant.method, gon_steps=variant.steps) * variant.nz**0.5,
                    )
                )
    return StudyPlan(study, cells, seeds, jobs)


@dataclass(frozen=True)
class StudyResult:
    """One finished run: its cell, its record (``mlflow_run_id`` None unless a caller that
    tracks sets it) and its held-out curve rows as ``curves.csv`` has them (none if diverged)."""

    cell: str
    record: dict[str, Any]
    curve: list[dict[str, Any]]


def study_result(outcome: Outcome) -> StudyResult:
    """The result of one job of :func:`study_jobs`; raises the job's error, which is a bug
    (a diverged run returns a record)."""
    if outcome.error is not None:
        raise outcome.error
    record = outcome.result["record"] | {"mlflow_run_id": None}
    curve = []
    if record["status"] == "ok":
        key = {k: record[k] for k in CURVE_KEYS}
        curve = [key | row for row in outcome.result["curve"]]
    return StudyResult(outcome.job.kwargs["cell"], record, curve)


def write_study_results(
    root: Path,
    params: Params,
    plan: StudyPlan,
    results: Iterable[StudyResult],
    *,
    device: torch.device | str,
) -> list[Path]:
    """Write ``runs/studies/<study>/<cell>/{metrics.json,curves.csv}`` for every cell.

    Whatever order the runs finished in: records in the plan's (params) order, curve rows by
    run in that order, then by step. Returns the files written.
    """
    records: dict[str, list[dict[str, Any]]] = {cell: [] for cell, _ in plan.cells}
    curves: dict[str, list[dict[str, Any]]] = {cell: [] for cell, _ in plan.cells}
    for result in results:
        records[result.cell].append(result.record)
        curves[result.cell] += result.curve
    s = params.studies
    study = plan.study
    order = {job.name: i for i, job in enumerate(plan.jobs)}
    written = []
    for cell, variants in plan.cells:
        out_dir = root / "runs" / "studies" / study / cell
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = sorted(
            records[cell], key=lambda r: order[job_name(study, cell, r["label"], r["seed"])]
        )
        rows = sorted(
            curves[cell],
            key=lambda r: (order[job_name(study, cell, r["label"], r["seed"])], r["step"]),
        )
        write_rows(out_dir / "curves.csv", rows, (*CURVE_KEYS, *CURVE_FIELDS))
        StudyCellMetrics(
            study=study,
            cell=cell,
            dataset=variants[0].dataset,
            profile=params.profile,
            device=str(device),
            seeds=plan.seeds,
            epochs=s.epochs,
            train_images=s.train_images,
            test_images=s.test_images,
            train_seconds=sum(r.get("train_seconds", 0.0) for r in runs),
            runs=runs,
        ).write(out_dir / "metrics.json")
        written += [out_dir / "metrics.json", out_dir / "curves.csv"]
    return written


def study_run(
    variant: Any, seed: int, vparams: Params, *, root: Path, study: str, cell: str
) -> dict[str, Any]:
    """Train and score one variant × seed of an ablation; a diverged run is a record too."""
    device = setup_device(vparams)
    s = vparams.studies
    data_dir = root / "data" / variant.dataset
    splits = {
        split: load_split(data_dir, split)[0][: s.test_images].to(device)
        for split in ("val", "test")
    }
    run_dir = root / "models" / "studies" / study / cell / f"{variant.label}-s{seed}"
    try:
        summary = fit(variant.spec(seed), vparams, data_dir=data_dir, run_dir=run_dir)
    except DivergenceError as err:
        return {"record": failed_record(variant, seed, err), "history": [], "curve": []}
    _, record = score_variant(
        variant, seed, vparams, run_dir=run_dir, splits=splits, summary=summary
    )
    return {
        "record": record,
        "history": history_rows(run_dir / HISTORY),
        "curve": history_rows(run_dir / CURVE) if (run_dir / CURVE).exists() else [],
    }
