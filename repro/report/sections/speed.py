"""The report's speed section: our training loop against the original one, and how it scales.

Why in the report: the reproducibility report could afford neither seeds nor baselines because
a GON run took hours; whether this package makes the full protocol affordable is a measured
claim like any other. The numbers come from the ``bench/`` scripts, which write
``reports/benchmarks.json`` (``bench/train_speed.py``) and ``reports/scaling.json``
(``bench/scaling.py``). They are machine-specific and not pipeline stages (timing needs a quiet
machine), so the report shows them with their machine and date when the files are present and
says how to produce them when not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro.io import read_json
from repro.report.figures import common as figures

BENCHMARKS_FILE = "benchmarks.json"
SCALING_FILES = ("scaling.json", "scaling_cuda.json")
PIPELINE_FILE = "pipeline_speed.json"  # bench/pipeline_speed.py


def _read(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ValueError as err:
        warnings.append(f"`{path.name}` could not be read ({err}): left out")
        return None
    return data if isinstance(data, Mapping) else None


def benchmark_rows(bench: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per benchmark entry that has ours, baseline and a ratio."""
    rows = []
    for b in (bench or {}).get("benchmarks", []):
        if not isinstance(b, Mapping) or b.get("ours") is None or b.get("baseline") is None:
            continue
        rows.append(
            {
                "name": str(b.get("name")),
                "device": str(b.get("device", "")),
                "ours": float(b["ours"]),
                "baseline": float(b["baseline"]),
                "unit": str(b.get("unit", "")),
                "ratio": float(b.get("ratio") or float(b["baseline"]) / float(b["ours"])),
                "note": str(b.get("note", "")),
            }
        )
    return rows


PHASES = ("data", "inner_forward", "inner_grad", "outer_forward", "outer_backward", "optimizer")


def phase_rows(bench: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Milliseconds per GON step by phase, ours and the original loop (``bench/profile_step.py``)."""
    rows = []
    for device, prof in ((bench or {}).get("profile") or {}).items():
        phases = (prof or {}).get("phases_ms_per_step") or {}
        ours, base = phases.get("ours") or {}, phases.get("baseline") or {}
        if not ours or not base:
            continue
        total_b = float(base.get("total", 0))
        data_o, data_b = float(ours.get("data", 0)), float(base.get("data", 0))
        rows.append(
            {
                "device": device,
                "ours": {k: ours.get(k) for k in (*PHASES, "total")},
                "baseline": {k: base.get(k) for k in (*PHASES, "total")},
                # Amdahl: the original loop with its data cost removed is ours at best.
                "bound": total_b / (total_b - data_b + data_o) if total_b > data_b else None,
            }
        )
    return rows


def compile_findings(bench: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """What torch.compile did to each variant (``bench/compile_check.py``): speed or the error."""
    out = []
    for device, found in ((bench or {}).get("compile") or {}).items():
        for variant, r in (found or {}).items():
            if not isinstance(r, Mapping) or "status" not in r:
                continue
            what = (
                f"{float(r['ms_per_step']):.1f} ms per step"
                if r.get("status") == "ok"
                else f"fails: {str(r.get('error', '')).splitlines()[0]}"
            )
            drift = r.get("first_loss_rel_diff_vs_eager")
            if drift:  # a compiled variant that does not compute the same numbers
                what += f" (its first loss differs from eager by {float(drift):.2%})"
            out.append({"device": device, "variant": variant, "result": what})
    return out


def scaling_frames(scalings: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images/s against batch size, seconds against models trained together), all devices."""
    batch, models = [], []
    for s in scalings:
        device = str(s.get("device", "cpu"))
        for row in s.get("batch_size", []):
            batch.append({"device": device, **row})
        for row in s.get("models", []):
            for mode in ("batched", "sequential"):
                if row.get(f"{mode}_seconds") is not None:
                    models.append(
                        {
                            "device": device,
                            "n_models": row["n_models"],
                            "mode": mode,
                            "seconds": row[f"{mode}_seconds"],
                        }
                    )
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


def pipeline_rows(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``bench/pipeline_speed.py``: the whole ``dvc repro`` of the main comparison, per-model
    stages against group stages, side by side on one machine."""
    results = (data or {}).get("results")
    if not isinstance(results, Mapping) or not {"baseline", "ours"} <= set(results):
        return None
    rows = [
        {
            "name": name,
            "commit": str(r.get("commit", "")),
            "stages": int(r.get("stages", 0)),
            "wall_seconds": float(r["wall_seconds"]),
            "model_steps": int(r.get("model_steps", 0)),
            "rate": float(r["model_steps_per_second"]),
            "threads": r.get("num_threads"),
            "workers": r.get("workers"),
        }
        for name, r in ((n, results[n]) for n in ("baseline", "ours"))
    ]
    machine = data.get("machine") or {}
    return {
        "rows": rows,
        "speedup": rows[0]["wall_seconds"] / rows[1]["wall_seconds"],
        "machine": f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
        "profile": data.get("profile") or {},
    }


def speed_section(out_dir: Path, fig_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Context for the template, and the scaling figure when ``scaling*.json`` exist."""
    warnings: list[str] = []
    bench = _read(out_dir / BENCHMARKS_FILE, warnings)
    scalings = [s for f in SCALING_FILES if (s := _read(out_dir / f, warnings))]
    rows = benchmark_rows(bench)
    machine = (bench or {}).get("machine")
    threads = (bench or {}).get("threads")
    section: dict[str, Any] = {
        "benchmarks": rows,
        "machine": machine.get("device_name") if isinstance(machine, Mapping) else machine,
        "torch": (bench or {}).get("torch"),
        "threads": threads.get("ours") if isinstance(threads, Mapping) else threads,
        "phases": phase_rows(bench),
        "compile": compile_findings(bench),
        "setting": (bench or {}).get("setting"),
        "scaling": [
            {
                "device": s.get("device"),
                "machine": s.get("machine"),
                "threads": s.get("threads"),
                "timing": s.get("timing"),
                "images": s.get("images_per_epoch"),
                "models": s.get("models", []),
            }
            for s in scalings
        ],
        "figure": None,
        "pipeline": pipeline_rows(_read(out_dir / PIPELINE_FILE, warnings)),
    }
    batch, models = scaling_frames(scalings)
    if not batch.empty or not models.empty:
        images = int(scalings[0].get("images_per_epoch") or 0)
        plot_scaling(batch, models, fig_dir / "scaling.png", images=images)
        section["figure"] = "figures/scaling.png"
    return section, warnings
