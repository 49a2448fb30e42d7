"""The variational GON against a VAE with the same decoder (repro.variational).

Per method: the held-out bounds (negative ELBO with its BCE and KL parts, the importance-weighted
bound) and the sample scores (repro.sample_scores) of each way of sampling, mean over seeds,
with the per-pixel-Gaussian floor and the held-out images' ceiling; the VAE against the VGON
paired over seeds (:func:`repro.report.verdicts.paired_verdict`); the sample grids of the lowest
seed copied into the report's figures. The claims' verdicts are in the claims table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repro.report.labels import dataset_label
from repro.report.loaders import ModelRun, by_seed
from repro.report.verdicts import paired_test, significance_level
from repro.stats import MeanCI, PairedDifference, mean_ci

LABELS = {"vgon": "Variational GON", "vae": "VAE"}
BOUNDS = ("neg_elbo", "bce", "kl", "neg_iwae")
SAMPLINGS = ("direct", "heads", "pixel_gaussian", "test_images")  # the sets scored (records.py)
SCORES = ("score", "relative_score", "mmd2")


@dataclass(frozen=True)
class VariationalRow:
    label: str
    n: int
    n_params: int
    bounds: dict[str, MeanCI]  # BOUNDS → mean over seeds
    samples: dict[str, dict[str, MeanCI]]  # SCORES → SAMPLINGS present → mean over seeds


@dataclass(frozen=True)
class Comparison:
    what: str  # the quantity compared
    difference: PairedDifference  # VAE − VGON, paired over seeds
    verdict: str  # lower / higher / not distinguishable / not tested


@dataclass(frozen=True)
class SampleGrid:
    label: str
    how: str  # "heads" or "direct"
    file: str  # under reports/figures/


@dataclass(frozen=True)
class VariationalSection:
    status: str  # "run" or "not run"
    alpha: float = 0.05
    dataset: str = ""
    epochs: int = 0
    train_images: int = 0
    test_images: int = 0
    iw_samples: int = 0
    sample_images: int = 0
    nz: int = 0
    ngf: int = 0
    rows: tuple[VariationalRow, ...] = ()
    vae_vs_vgon: tuple[Comparison, ...] = ()
    grids: tuple[SampleGrid, ...] = ()


def _seeds(runs: Sequence[ModelRun], method: str, path: str) -> dict[int, float]:
    return by_seed((r for r in runs if r.record.method == method), path)


def _copy_grids(runs: Sequence[ModelRun], fig_dir: Path) -> tuple[SampleGrid, ...]:
    grids = []
    for method in LABELS:
        first = min(
            (r for r in runs if r.record.method == method),
            key=lambda r: r.record.seed,
            default=None,
        )
        for how in ("direct", "heads"):
            name = f"variational_{method}_{how}.png"
            if first and first.copy_png(f"samples_{how}.png", fig_dir / name):
                grids.append(SampleGrid(LABELS[method], how, name))
    return tuple(grids)


def variational_section(
    runs: Sequence[ModelRun], *, confidence: float, fig_dir: Path
) -> VariationalSection:
    if not runs:
        return VariationalSection(status="not run")
    rows = []
    for method, label in LABELS.items():
        mine = [r for r in runs if r.record.method == method]
        if not mine:
            continue
        rows.append(
            VariationalRow(
                label=label,
                n=len(mine),
                n_params=mine[0].record.n_params,
                bounds={
                    k: mean_ci(list(_seeds(runs, method, f"test.{k}").values()), confidence)
                    for k in BOUNDS
                },
                samples={
                    score: {
                        k: mean_ci(list(v.values()), confidence)
                        for k in SAMPLINGS
                        if (v := _seeds(runs, method, f"samples.{score}.{k}"))
                    }
                    for score in SCORES
                },
            )
        )
    alpha = significance_level(confidence)
    versus = []
    for path, what in (
        ("test.neg_elbo", "negative ELBO"),
        ("test.neg_iwae", "negative IWAE bound"),
        ("samples.score.direct", "classifier score of prior samples"),
    ):
        t = paired_test(_seeds(runs, "vae", path), _seeds(runs, "vgon", path), confidence)
        if t is not None:
            versus.append(Comparison(what, t.difference, t.verdict))
    first = runs[0].record
    return VariationalSection(
        status="run",
        alpha=alpha,
        dataset=dataset_label(first.dataset),
        epochs=first.epochs,
        train_images=first.train_images,
        test_images=first.test_images,
        iw_samples=first.iw_samples,
        sample_images=first.sample_images,
        nz=first.nz,
        ngf=first.ngf,
        rows=tuple(rows),
        vae_vs_vgon=tuple(versus),
        grids=_copy_grids(runs, fig_dir),
    )
