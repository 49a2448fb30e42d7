"""The implicit GON (a SIREN decoder) against an implicit AE with the same SIREN (repro.implicit).

Per dataset × method: the held-out test SSE per image and the mean-image loss it is judged
against, mean over seeds; GON against the AE paired over seeds
(:func:`repro.report.verdicts.paired_verdict`); the super-resolution runs (GON trained at low
resolution, decoded on the full grid) against bicubic upsampling; the sample and reconstruction
grids of the lowest seed copied into the report's figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repro.report.labels import dataset_label
from repro.report.loaders import ModelRun, by_seed
from repro.report.verdicts import NOT_TESTED, paired_test, significance_level
from repro.stats import MeanCI, PairedDifference, mean_ci

LABELS = {"gon": "implicit GON", "ae": "implicit AE"}


@dataclass(frozen=True)
class ImplicitRow:
    dataset: str
    label: str
    n: int
    n_params: int
    sse: MeanCI
    mean_image: MeanCI  # the loss of decoding every image as the mean training image


@dataclass(frozen=True)
class ImplicitComparison:
    dataset: str
    difference: PairedDifference  # GON − AE test SSE per image, paired over seeds
    verdict: str


@dataclass(frozen=True)
class SuperResolution:
    dataset: str
    low_res: int
    resolution: int
    n: int
    decoded: MeanCI
    bicubic: MeanCI
    difference: PairedDifference | None  # decoded − bicubic
    verdict: str


@dataclass(frozen=True)
class Grid:
    caption: str
    file: str
    note: str  # what the grid's rows are


@dataclass(frozen=True)
class ImplicitSection:
    status: str  # "run" or "not run"
    alpha: float = 0.05
    steps: int = 0
    train_images: int = 0
    test_images: int = 0
    hidden: int = 0
    nz: int = 0
    rows: tuple[ImplicitRow, ...] = ()
    gon_vs_ae: tuple[ImplicitComparison, ...] = ()
    super_resolution: tuple[SuperResolution, ...] = ()
    grids: tuple[Grid, ...] = ()


def _full(runs: Sequence[ModelRun]) -> list[ModelRun]:
    """The runs trained at full resolution (not the super-resolution ones)."""
    return [r for r in runs if r.record.super_resolution is None]


def _copy_grids(runs: Sequence[ModelRun], fig_dir: Path) -> tuple[Grid, ...]:
    grids = []
    for r in sorted(runs, key=lambda r: r.record.seed):
        rec = r.record
        sr = rec.super_resolution is not None
        kind = "super-resolution GON" if sr else LABELS[rec.method]
        for png, what in (("recon.png", "reconstructions"), ("samples.png", "samples")):
            name = f"implicit_{rec.dataset}_{r.path.name.rsplit('-s', 1)[0]}_{png}"
            if any(g.file == name for g in grids) or not r.copy_png(png, fig_dir / name):
                continue
            caption = f"{dataset_label(rec.dataset)}, {kind}: {what} (seed {rec.seed})"
            grids.append(Grid(caption, name, _grid_note(what, sr, rec.resolution)))
    return tuple(grids)


def _grid_note(what: str, super_resolution: bool, resolution: int) -> str:
    """What the rows of a grid written by :func:`repro.implicit.write_grid` show."""
    if what == "samples":
        return (
            "Images decoded from latents drawn from a Gaussian fitted to the latents of the "
            "last training batches (Implicit-GON.py's sampling)."
        )
    if super_resolution:
        return (
            "Rows of eight held-out test images in turn: the true images, the "
            f"{resolution}×{resolution} inputs enlarged by repetition, their bicubic upsampling, "
            "and GON's decoding of each input's latent on the full grid."
        )
    return (
        "Rows of eight held-out test images in turn: the true images, then their "
        "reconstructions (each image's latent decoded on the same grid)."
    )


def implicit_section(
    runs: Sequence[ModelRun], *, confidence: float, fig_dir: Path
) -> ImplicitSection:
    if not runs:
        return ImplicitSection(status="not run")
    alpha = significance_level(confidence)
    full = _full(runs)
    datasets = list(dict.fromkeys(r.record.dataset for r in runs))
    rows, versus, sr = [], [], []
    for ds in datasets:
        here = [r for r in full if r.record.dataset == ds]
        for method, label in LABELS.items():
            mine = [r for r in here if r.record.method == method]
            if mine:
                rows.append(
                    ImplicitRow(
                        dataset=dataset_label(ds),
                        label=label,
                        n=len(mine),
                        n_params=mine[0].record.n_params,
                        sse=mean_ci(list(by_seed(mine, "test.sse_per_image").values()), confidence),
                        mean_image=mean_ci(
                            list(by_seed(mine, "test.mean_image_sse_per_image").values()),
                            confidence,
                        ),
                    )
                )
        gon = by_seed((r for r in here if r.record.method == "gon"), "test.sse_per_image")
        ae = by_seed((r for r in here if r.record.method == "ae"), "test.sse_per_image")
        if (t := paired_test(gon, ae, confidence)) is not None:
            versus.append(ImplicitComparison(dataset_label(ds), t.difference, t.verdict))
        low = [r for r in runs if r.record.dataset == ds and r.record.super_resolution is not None]
        if low:
            dec = by_seed(low, "super_resolution.decoded_sse_per_image")
            bic = by_seed(low, "super_resolution.bicubic_sse_per_image")
            t = paired_test(dec, bic, confidence)
            sr.append(
                SuperResolution(
                    dataset=dataset_label(ds),
                    low_res=low[0].record.resolution,
                    resolution=max((r.record.resolution for r in full), default=0),
                    n=len(dec),
                    decoded=mean_ci(list(dec.values()), confidence),
                    bicubic=mean_ci(list(bic.values()), confidence),
                    difference=t.difference if t else None,
                    verdict=t.verdict if t else NOT_TESTED,
                )
            )
    first = (full or list(runs))[0].record
    return ImplicitSection(
        status="run",
        alpha=alpha,
        steps=first.steps,
        train_images=first.train_images,
        test_images=first.test_images,
        hidden=first.hidden,
        nz=first.nz,
        rows=tuple(rows),
        gon_vs_ae=tuple(versus),
        super_resolution=tuple(sr),
        grids=_copy_grids(runs, fig_dir),
    )
