"""The per-dataset sections and the main-run figures as typed models, on a few fake runs with
hand-computed expected values (no training)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from repro.report.loaders import Run
from repro.report.sections.datasets import (
    BNRatio,
    DatasetSection,
    ReferenceRow,
    SpreadRow,
    _spread_rows,
    dataset_sections,
)
from repro.report.sections.figures import MainFigures, ReconGrid, write_figures
from repro.report.sections.results import references_frame, summarise

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PIXELS = 1024


def losses(batch: float | None, running: float | None, norm: float | None = None) -> dict:
    """BN mode, split, unit; val = test; the latent norm in batch mode when given."""
    out: dict[str, Any] = {}
    for mode, v in (("batch", batch), ("running", running)):
        if v is None:
            continue
        cell = {"sse_per_image": v, "mse_per_pixel": v / PIXELS}
        test = cell | ({"latent_norm": norm} if norm is not None and mode == "batch" else {})
        out[mode] = {"val": cell, "test": test}
    return out


def run(tmp: Path, method: str, nz: int, seed: int, loss: dict, spread: dict | None = None) -> Run:
    path = tmp / f"mnist-{method}-nz{nz}-s{seed}"
    path.mkdir(parents=True, exist_ok=True)
    metrics = {"losses": loss} | ({"batch_order_spread": spread} if spread else {})
    return Run("mnist", method, nz, seed, path, metrics, None)


def spread(std: float, diff: float) -> dict:
    return {"test_sse_per_image_std": std, "test_sse_per_image_max_abs_diff": diff, "shuffles": 4}


@pytest.fixture
def runs(tmp_path: Path) -> list[Run]:
    return [
        run(tmp_path, "gon", 32, 0, losses(10.0, 20.0, norm=2.0), spread(0.1, 0.5)),
        run(tmp_path, "gon", 32, 1, losses(12.0, 24.0, norm=4.0), spread(0.3, 1.1)),
        run(tmp_path, "ae", 32, 0, losses(8.0, None)),
        run(tmp_path, "ae", 32, 1, losses(8.5, None)),
        run(tmp_path, "gon", 64, 0, losses(0.0, 5.0)),  # batch loss 0: no per-seed ratio
    ]


def test_dataset_sections(runs: list[Run]) -> None:
    methods = ["gon", "ae", "ae_linear"]
    results = summarise(runs, confidence=0.95, headline_bn="batch", methods=methods)
    refs = references_frame(
        {
            "mnist": {
                "zero_image": {"sse_per_image": 100.0, "mse_per_pixel": 0.1},
                "pca": {"32": {"sse_per_image": 9.0}, "128": {"sse_per_image": 5.0}},
            }
        }
    )
    mnist, fashion = dataset_sections(
        ["mnist", "fashion_mnist"], runs, results, refs, methods=methods, headline_bn="batch"
    )
    assert fashion == DatasetSection(name="fashion_mnist", label="Fashion-MNIST")
    assert fashion.status == "not run"
    assert (mnist.name, mnist.label, mnist.status, mnist.nzs) == ("mnist", "MNIST", "run", (32, 64))
    assert mnist.missing_methods == ("AE (linear encoder)",)
    assert [(r.method, r.nz, r.n, r.sse.mean) for r in mnist.headline_rows] == [
        ("GON", 32, 2, 11.0),
        ("AE", 32, 2, 8.25),
        ("GON", 64, 1, 0.0),
    ]
    assert mnist.headline_rows[0].mse is not None
    assert mnist.headline_rows[0].mse.mean == pytest.approx(11.0 / PIXELS)
    (comparison,) = mnist.comparisons  # nz 64 has one method: nothing to compare
    assert (comparison.nz, comparison.lower, comparison.higher) == (32, "AE", "GON")
    assert mnist.reference_rows[0] == ReferenceRow("all-zero image", 100.0, 0.1)
    assert mnist.reference_rows[1].name == "PCA, 32 components"
    assert mnist.reference_rows[1].sse == 9.0 and math.isnan(mnist.reference_rows[1].mse)
    assert len(mnist.reference_rows) == 2  # PCA 128 is not an nz that ran
    # both modes for GON, batch only for the AE (its running cells are all missing)
    assert [(r.method, r.nz, r.bn, r.n) for r in mnist.bn_rows] == [
        ("GON", 32, "BN batch statistics", 2),
        ("GON", 32, "BN running statistics", 2),
        ("AE", 32, "BN batch statistics", 2),
        ("GON", 64, "BN batch statistics", 1),
        ("GON", 64, "BN running statistics", 1),
    ]
    ae = mnist.bn_rows[2]
    assert ae.test_sse_per_image is not None and ae.test_sse_per_image.mean == 8.25
    assert ae.val_mse_per_pixel is not None
    assert ae.val_mse_per_pixel.mean == pytest.approx(8.25 / PIXELS)
    gon32, gon64 = mnist.bn_ratios  # the AE has no running-statistics loss: no ratio
    assert gon32 == BNRatio(
        method="GON",
        nz=32,
        running=22.0,
        batch=11.0,
        per_seed=(2.0, 2.0),
        latent_norm_running=None,
        latent_norm_batch=3.0,
        n=2,
    )
    assert (gon32.ratio, gon32.ratio_min, gon32.ratio_max) == (2.0, 2.0, 2.0)
    assert gon64.per_seed == () and gon64.ratio == math.inf
    assert math.isnan(gon64.ratio_min) and math.isnan(gon64.ratio_max)
    assert mnist.spread_rows == (
        SpreadRow(
            method="GON",
            nz=32,
            n=2,
            shuffles=(4,),
            std_mean=pytest.approx(0.2),
            max_abs_diff=1.1,
            mean_loss=11.0,
        ),
    )
    assert mnist.spread_rows[0].relative == pytest.approx(0.1)


def test_spread_relative_to_a_missing_or_zero_loss(runs: list[Run]) -> None:
    (missing,) = _spread_rows(runs[:2], ["gon"], [32], "other")  # no loss in this mode
    assert math.isnan(missing.mean_loss) and math.isnan(missing.relative)
    zero = [run(r.path.parent, "gon", 64, 1, losses(0.0, 0.0), spread(0.1, 0.2)) for r in runs[:1]]
    (row,) = _spread_rows(zero, ["gon"], [64], "batch")
    assert row.mean_loss == 0.0 and math.isnan(row.relative)


def history(seconds: bool) -> pd.DataFrame:
    h = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_mse_per_pixel": [0.02, 0.01],
            "val_mse_per_pixel": [0.02, 0.015],
            "images_seen": [100, 200],
        }
    )
    return h.assign(seconds=[5.0, 5.0]) if seconds else h


def with_recon(r: Run, history_: pd.DataFrame | None = None) -> Run:
    (r.path / "recon.png").write_bytes(PNG_MAGIC + r.path.name.encode())
    return Run(r.dataset, r.method, r.nz, r.seed, r.path, r.metrics, history_)


def test_main_figures(runs: list[Run], tmp_path: Path) -> None:
    results = summarise(runs, confidence=0.95, headline_bn="batch")
    refs = references_frame({"mnist": {"zero_image": {"sse_per_image": 100.0}}})
    shown = [
        with_recon(runs[0], history(True)),
        with_recon(runs[1], history(True)),  # seed 1: seed 0's grid is the one shown
        runs[2],  # no grid
        with_recon(runs[4], history(True)),
    ]
    figs = write_figures(
        tmp_path / "out", shown, results, refs, methods=["gon", "ae"], confidence=0.95
    )
    assert figs == MainFigures(
        curves="figures/training_curves.png",
        curves_time="figures/training_curves_time.png",
        test="figures/test_losses.png",
        recon=(
            ReconGrid("MNIST", "GON", 32, 0, "figures/recon_mnist_gon_nz32.png", runs[0].name),
            ReconGrid("MNIST", "GON", 64, 0, "figures/recon_mnist_gon_nz64.png", runs[4].name),
        ),
    )
    fig_dir = tmp_path / "out" / "figures"
    for name in ("training_curves.png", "training_curves_time.png", "test_losses.png"):
        assert (fig_dir / name).read_bytes()[:8] == PNG_MAGIC
    assert (fig_dir / "recon_mnist_gon_nz32.png").read_bytes() == PNG_MAGIC + b"mnist-gon-nz32-s0"
    # epochs without their times: no wall-clock view; one nz: no nz in the grid's name
    figs = write_figures(
        tmp_path / "untimed",
        [with_recon(runs[0], history(False))],
        results.iloc[0:0],
        refs,
        methods=["gon"],
        confidence=0.95,
    )
    assert figs == MainFigures(
        curves="figures/training_curves.png",
        recon=(ReconGrid("MNIST", "GON", 32, 0, "figures/recon_mnist_gon.png", runs[0].name),),
    )
    assert (
        write_figures(
            tmp_path / "none", runs[2:4], results.iloc[0:0], refs, methods=["ae"], confidence=0.95
        )
        == MainFigures()
    )
