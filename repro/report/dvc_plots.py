"""The data behind ``dvc plots show``: one long-format CSV per figure, one series per run.

DVC draws each file declared under the report stage's ``plots`` (``dvc.yaml``) with the template
``.dvc/plots/series.json`` (a Vega-Lite line per value of the ``series`` column) into a page built
from ``.dvc/plots/offline.html``, which carries the Vega bundles itself: the page works offline,
like ``report.html``. The numbers are the runs' own files, rearranged, never recomputed.

    plots/learning_curves.csv  main runs' held-out learning curves (curve.csv): step, test MSE
    plots/training.csv         main runs' per-epoch training loss (history.csv)
    plots/efficiency.csv       the data-efficiency runs' held-out curves (curve.csv)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from repro.io import atomic_write
from repro.report.loaders import EfficiencyRun, Run
from repro.report.study_runs import read_curve

#: file name → (x column, y column); dvc.yaml's report stage declares the same pairs (a test
#: holds the two together).
PLOTS = {
    "learning_curves.csv": ("step", "test_mse_per_pixel"),
    "training.csv": ("epoch", "train_mse_per_pixel"),
    "efficiency.csv": ("images_seen", "test_sse_per_image"),
}


def _series(frames: list[tuple[str, pd.DataFrame | None]], x: str, y: str) -> pd.DataFrame:
    """Stack each run's (x, y) columns under its series name; runs without them are left out."""
    parts = [
        f[[x, y]].assign(series=name)[["series", x, y]]
        for name, f in frames
        if f is not None and {x, y} <= set(f.columns)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["series", x, y])


def plot_frames(
    runs: Sequence[Run], efficiency: Sequence[EfficiencyRun]
) -> dict[str, pd.DataFrame]:
    """Each plot file's rows, in the report's run order."""

    def label(r: Run) -> str:
        return f"{r.dataset} nz{r.nz} {r.method} s{r.seed}"

    sources = {
        "learning_curves.csv": [(label(r), read_curve(r)) for r in runs],
        "training.csv": [(label(r), r.history) for r in runs],
        "efficiency.csv": [
            (f"{r.dataset} {r.method} n{r.train_size} s{r.seed}", r.curve) for r in efficiency
        ],
    }
    return {name: _series(sources[name], *PLOTS[name]) for name in PLOTS}


def write_plot_data(
    runs: Sequence[Run], efficiency: Sequence[EfficiencyRun], plots_dir: Path
) -> list[Path]:
    """Write every plot file (an empty run set writes a header-only file: DVC still finds it)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in plot_frames(runs, efficiency).items():
        with atomic_write(plots_dir / name, "w") as fh:
            frame.to_csv(fh, index=False)
        written.append(plots_dir / name)
    return written
