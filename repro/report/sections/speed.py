"""The report's speed section: our training loop against the original one, and how it scales.

Why in the report: the reproducibility report could afford neither seeds nor baselines because
a GON run took hours; whether this package makes the full protocol affordable is a measured
claim like any other. The numbers come from the ``bench/`` scripts, which write
``reports/benchmarks.json`` (``bench/train_speed.py``, with ``bench/profile_step.py``'s phases
and ``bench/compile_check.py``'s findings), ``reports/scaling.json`` (``bench/scaling.py``) and
``reports/pipeline_speed.json`` (``bench/pipeline_speed.py``). They are machine-specific and not
pipeline stages (timing needs a quiet machine), so the report shows them with their machine and
date when the files are present and says how to produce them when not. Each file is parsed
where it is read into the records of :mod:`repro.report.bench_records`; one that is not valid
JSON or not laid out as its script writes it is left out with a warning naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from repro.report.bench_records import BenchmarkFile, PipelineSpeed, ScalingRun, load
from repro.report.figures import common as figures

BENCHMARKS_FILE = "benchmarks.json"
SCALING_FILES = ("scaling.json", "scaling_cuda.json")
PIPELINE_FILE = "pipeline_speed.json"
SCALING_FIGURE = "scaling.png"


@dataclass(frozen=True)
class SpeedSection(BenchmarkFile):
    """The template's ``speed``: benchmarks.json's tables (the fields it inherits; empty when
    the file is absent or unreadable), the scaling runs and their figure, the whole pipeline."""

    scaling: tuple[ScalingRun, ...] = ()
    figure: str | None = None  # figures/scaling.png when a scaling run gave it points to draw
    pipeline: PipelineSpeed | None = None


def scaling_frames(scalings: Sequence[ScalingRun]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images/s against batch size, seconds against models trained together), all devices."""
    batch = [
        {"device": s.device, "batch_size": p.batch_size, "images_per_s": p.images_per_s}
        for s in scalings
        for p in s.batch_size
    ]
    models = [
        {"device": s.device, "n_models": m.n_models, "mode": mode, "seconds": seconds}
        for s in scalings
        for m in s.models
        for mode, seconds in (("batched", m.batched_seconds), ("sequential", m.sequential_seconds))
        if seconds is not None
    ]
    return pd.DataFrame(batch), pd.DataFrame(models)


def plot_scaling(batch: pd.DataFrame, models: pd.DataFrame, path: Path, *, images: int) -> Path:
    """Left: training throughput against batch size; right: epoch time against models trained."""
    figures.set_theme()
    fig, (left, right) = figures.plt.subplots(1, 2, figsize=(10, 3.8))
    if not batch.empty:
        figures.sns.lineplot(
            data=batch, x="batch_size", y="images_per_s", hue="device", marker="o", ax=left
        )
        left.set_xscale("log", base=2)
        left.set_xticks(sorted(batch["batch_size"].unique()))
        left.get_xaxis().set_major_formatter(figures.FuncFormatter(lambda v, _: f"{v:g}"))
    left.set(
        xlabel="batch size (images per step)",
        ylabel="training throughput (images / s)",
        title="One GON, batch size",
    )
    if not models.empty:
        models = models.assign(
            label=models["device"]
            + ", "
            + models["mode"].map(
                {"batched": "trained together (vmap)", "sequential": "one after another"}
            )
        )
        figures.sns.lineplot(
            data=models, x="n_models", y="seconds", hue="label", marker="o", ax=right
        )
        right.set_xticks(sorted(models["n_models"].unique()))
    right.set(
        xlabel="number of GON models (same shape, different seeds)",
        ylabel=f"seconds per epoch of {images:,} images",
        title="Several models at once",
    )
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        if ax.get_legend() is not None:
            ax.get_legend().set_title(None)
    fig.tight_layout()
    return figures._save(fig, path)


def speed_section(out_dir: Path, fig_dir: Path) -> tuple[SpeedSection, list[str]]:
    """The section from the bench/ outputs in ``out_dir`` (the scaling figure drawn into
    ``fig_dir`` when ``scaling*.json`` have points), and the warnings about unreadable files."""
    warnings: list[str] = []
    bench = load(out_dir / BENCHMARKS_FILE, BenchmarkFile.parse, warnings)
    scalings = tuple(
        s for f in SCALING_FILES if (s := load(out_dir / f, ScalingRun.parse, warnings))
    )
    pipeline = load(out_dir / PIPELINE_FILE, PipelineSpeed.parse, warnings)
    figure = None
    batch, models = scaling_frames(scalings)
    if not batch.empty or not models.empty:
        plot_scaling(batch, models, fig_dir / SCALING_FIGURE, images=scalings[0].images)
        figure = f"figures/{SCALING_FIGURE}"
    bench = bench or BenchmarkFile()
    section = SpeedSection(**vars(bench), scaling=scalings, figure=figure, pipeline=pipeline)
    return section, warnings
