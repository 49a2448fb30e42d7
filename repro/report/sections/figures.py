"""The report's figures: what the main runs and the GFE studies allow, written under figures/.

Drawing is :mod:`repro.report.figures.runs` and :mod:`repro.report.figures.gfe`; this module
decides which figures the inputs allow, writes them and returns their paths
(:class:`MainFigures`, or the sections with them) for the template. A figure with no data is
left out and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from repro.io import atomic_write
from repro.report.figures import gfe as fig_gfe
from repro.report.figures import runs as fig_runs
from repro.report.figures.common import HISTORY_COLUMNS, REFERENCE_COLUMNS
from repro.report.labels import dataset_label, method_label
from repro.report.loaders import Run
from repro.report.sections.convergence import ConvergenceSection
from repro.report.sections.efficiency import EfficiencySection


def histories_long(runs: Sequence[Run]) -> pd.DataFrame:
    """Training histories in long format for :func:`fig_runs.plot_training_curves`."""
    frames = []
    for r in runs:
        h = r.history
        if h is None or h.empty:
            continue
        base = pd.DataFrame(
            {
                "dataset": r.dataset,
                "method": r.method,
                "nz": r.nz,
                "seed": r.seed,
                "epoch": h["epoch"].astype(int),
                "images_seen": h["images_seen"] if "images_seen" in h else math.nan,
                "wall_seconds": h["seconds"].cumsum() if "seconds" in h else math.nan,
            }
        )
        for split in ("train", "val"):
            col = f"{split}_mse_per_pixel"
            if col in h:
                frames.append(base.assign(split=split, mse_per_pixel=h[col].astype(float)))
    if not frames:
        return pd.DataFrame(columns=[*HISTORY_COLUMNS, "images_seen", "wall_seconds"])
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class ReconGrid:
    """A copied reconstruction grid: the run it comes from and its path under the report."""

    dataset: str
    method: str
    nz: int
    seed: int
    path: str
    run: str


@dataclass(frozen=True)
class MainFigures:
    """The main runs' figures: paths under the report, None (or no grids) when not drawn."""

    curves: str | None = None  # training curves per epoch
    curves_time: str | None = None  # the same against wall-clock time
    test: str | None = None  # held-out test losses with the reference losses
    recon: tuple[ReconGrid, ...] = ()


def write_figures(
    out_dir: Path,
    runs: Sequence[Run],
    results: pd.DataFrame,
    refs: pd.DataFrame,
    *,
    methods: Sequence[str],
    confidence: float,
) -> MainFigures:
    """Draw what the inputs allow; a figure with no data is left out and the report says so."""
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    hist = histories_long(runs)
    views = {} if hist.empty else {"curves": "epoch"}
    if views and hist["wall_seconds"].notna().all():  # every run logged its epoch times
        views["curves_time"] = "wall_seconds"
    for key, x in views.items():
        name = f"training_{key}.png"
        fig_runs.plot_training_curves(
            hist, fig_dir / name, x=x, methods=methods, confidence=confidence
        )
        paths[key] = f"figures/{name}"
    if not results.empty and (results["split"] == "test").any():
        fig_runs.plot_test_losses(
            results,
            fig_dir / "test_losses.png",
            references=refs[list(REFERENCE_COLUMNS)],
            methods=methods,
            confidence=confidence,
        )
        paths["test"] = "figures/test_losses.png"
    return MainFigures(**paths, recon=_copy_recon_grids(fig_dir, runs))


def _copy_recon_grids(fig_dir: Path, runs: Sequence[Run]) -> tuple[ReconGrid, ...]:
    """Copy the lowest-seed (normally seed 0) reconstruction grid of each dataset × method × nz.

    ``runs`` must already be in report order (dataset, method, nz, seed).
    """
    chosen: dict[tuple[str, str, int], Run] = {}
    for r in runs:
        if r.recon is not None and (r.dataset, r.method, r.nz) not in chosen:
            chosen[(r.dataset, r.method, r.nz)] = r
    several_nz = len({nz for _, _, nz in chosen}) > 1
    out = []
    for (dataset, method, nz), r in chosen.items():  # insertion order = the runs' order
        name = f"recon_{dataset}_{method}" + (f"_nz{nz}" if several_nz else "") + ".png"
        assert r.recon is not None
        with atomic_write(fig_dir / name, "wb") as fh:
            fh.write(r.recon.read_bytes())
        out.append(
            ReconGrid(
                dataset=dataset_label(dataset),
                method=method_label(method),
                nz=nz,
                seed=r.seed,
                path=f"figures/{name}",
                run=r.name,
            )
        )
    return tuple(out)


def write_gfe_figures(
    fig_dir: Path,
    finals: pd.DataFrame,
    curves: pd.DataFrame,
    efficiency: EfficiencySection,
    convergence: ConvergenceSection,
    *,
    methods: Sequence[str],
    confidence: float,
) -> tuple[EfficiencySection, ConvergenceSection]:
    """Draw the GFE study figures the inputs allow; the sections with the figures' paths."""
    paths: dict[str, str | None] = {}
    for part, frame, plot in (
        ("final", finals, fig_gfe.plot_efficiency_final),
        ("curves", curves, fig_gfe.plot_efficiency_curves),
    ):
        name = f"efficiency_{part}.png"
        paths[f"figure_{part}"] = None if frame.empty else f"figures/{name}"
        if not frame.empty:
            fig_dir.mkdir(parents=True, exist_ok=True)
            plot(
                frame,
                fig_dir / name,
                loss=efficiency.loss,
                methods=methods,
                confidence=confidence,
            )
    items = []
    for item in convergence.items:
        if item.curves is not None:
            several = len(convergence.items) > 1
            name = f"convergence_{item.dataset}.png" if several else "convergence.png"
            fig_dir.mkdir(parents=True, exist_ok=True)
            fig_gfe.plot_convergence(
                item.curves, fig_dir / name, loss=item.loss, confidence=confidence
            )
            item = replace(item, figure=f"figures/{name}")
        items.append(item)
    return replace(efficiency, **paths), replace(convergence, items=tuple(items))
