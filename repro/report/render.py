"""Build the Markdown report from the runs directory.

Nothing here knows a result: every number in the report is read from the runs' ``metrics.json``
and ``history.csv``, the reference losses, the data manifests, the params and ``claims.yaml``
(the published numbers). The document itself is a Jinja2 template; this module only gathers
and summarises the inputs into plain structures the template lays out.

Layout read (written by the pipeline)::

    runs/<dataset>/<method>-nz<nz>-s<seed>/{metrics.json, history.csv, recon.png}
    runs/<dataset>/reference.json
    data/<dataset>.manifest.json
    runs/efficiency/<dataset>/<method>-n<train_size>-s<seed>/{metrics.json, curve.csv}
    runs/convergence/<dataset>/{summary.json, curves.csv}      (curves.csv may be absent)
    out_dir/bench_gfe_gradients.json                            (optional benchmark)
    runs/studies/<study>/<cell>/{metrics.json, curves.csv}      (ablation studies)

Layout written::

    out_dir/report.md, out_dir/results.csv, out_dir/figures/*.png
    out_dir/studies.csv, out_dir/figures/study_*.png     (ablation studies: repro/report/studies.py)
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from repro.io import atomic_write
from repro.report import figures, narrative
from repro.report.claims import collect_evidence, evaluate_claims, load_registry, write_claims_csv
from repro.report.figures import bn_label, dataset_label, flow_label, loss_label, method_label
from repro.report.gpu import gpu_section
from repro.report.html import write_html
from repro.report.loaders import (  # noqa: F401  (re-exported: tests and callers use render.*)
    BENCH_FILE,
    CLAIMS_PATH,
    PACKAGE_DIR,
    STUDY_DIRS,
    EfficiencyRun,
    Run,
    load_benchmark,
    load_claims,
    load_convergence,
    load_efficiency_runs,
    load_manifest,
    load_reference,
    load_runs,
)
from repro.report.speed import speed_section
from repro.report.studies import (
    StudyRun,
    claims_by_id,
    load_studies,
    published_parameter_ratio,
    studies_context,
)
from repro.stats import MeanCI, mean_ci, paired_difference

TEMPLATES_DIR = PACKAGE_DIR / "templates"
TEMPLATE_NAME = "report.md.j2"

SPLITS = ("val", "test")
UNITS = ("sse_per_image", "mse_per_pixel")
UNIT_LABELS = {"sse_per_image": "SSE per image", "mse_per_pixel": "MSE per pixel"}
REFERENCE_LABELS = {"zero_image": "all-zero image", "mean_train_image": "mean training image"}

RESULTS_COLUMNS = [
    "dataset",
    "method",
    "nz",
    "bn_mode",
    "split",
    "headline",
    "n",
    "confidence",
    "unit",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "mse_per_pixel_mean",
    "mse_per_pixel_ci_low",
    "mse_per_pixel_ci_high",
]
# Appended for the data-efficiency rows (empty for the GON/AE rows above): the study loss in its
# own unit next to SSE per image, and what the training cost.
EFFICIENCY_COLUMNS = [
    "train_size",
    "loss",
    "loss_mean",
    "loss_ci_low",
    "loss_ci_high",
    "train_seconds_mean",
    "train_nfe_mean",
]

# Subdirectories of runs/ that hold the GFE studies and the ablation studies, not datasets of
# the GON study.
BENCH_MODES = ("backprop", "adjoint", "approximate")
# Settings every efficiency run records; a run that disagrees with params is flagged.
EFFICIENCY_SETTINGS = ("architecture", "nz", "steps", "batch_size", "eval_images", "loss")
# Published GFE claims shown next to the section that measures them (ids in claims.yaml).
GFE_CLAIMS = {
    "efficiency": ("gfe-data-efficiency",),
    "convergence": ("gfe-second-order-faster", "gfe-adaptive-step-stiffness"),
    "gradients": ("gfe-adjoint-not-necessary",),
}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def _ordered(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Unique values, those in ``preferred`` first in its order, the rest sorted."""
    seen = set(values)
    return [v for v in preferred if v in seen] + sorted(seen - set(preferred))


def _loss(run: Run, bn_mode: str, split: str, unit: str) -> float | None:
    try:
        return float(run.metrics["losses"][bn_mode][split][unit])
    except (KeyError, TypeError):
        return None


def _latent_norm(run: Run, bn_mode: str) -> float | None:
    """Mean L2 norm of the test latents in one BN mode (absent in older metrics files)."""
    value = run.metrics.get("losses", {}).get(bn_mode, {}).get("test", {}).get("latent_norm")
    return None if value is None else float(value)


def _bn_modes(runs: Sequence[Run]) -> list[str]:
    modes = {mode for r in runs for mode in r.metrics.get("losses", {})}
    return _ordered(modes, ("batch", "running"))


def summarise(
    runs: Sequence[Run],
    *,
    confidence: float,
    headline_bn: str,
    methods: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> pd.DataFrame:
    """results.csv: one row per dataset × method × nz × bn_mode × split.

    ``mean``/``ci_*`` are in SSE per image (the unit Table 1 is compared in); the per-pixel
    columns are summarised from the per-pixel values in metrics.json, not rescaled, so the CSV
    also exposes any inconsistency between the two.
    """
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.dataset, r.method, r.nz), []).append(r)
    for (dataset, method, nz), group in groups.items():
        for mode in _bn_modes(group):
            for split in SPLITS:
                sse = [
                    v for r in group if (v := _loss(r, mode, split, "sse_per_image")) is not None
                ]
                mse = [
                    v for r in group if (v := _loss(r, mode, split, "mse_per_pixel")) is not None
                ]
                if not sse:
                    continue
                ci = mean_ci(sse, confidence)
                ci_px = mean_ci(mse, confidence) if mse else None
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "nz": nz,
                        "bn_mode": mode,
                        "split": split,
                        "headline": mode == headline_bn,
                        "n": ci.n,
                        "confidence": confidence,
                        "unit": "sse_per_image",
                        "mean": ci.mean,
                        "ci_low": ci.low,
                        "ci_high": ci.high,
                        "std": ci.std,
                        "mse_per_pixel_mean": ci_px.mean if ci_px else math.nan,
                        "mse_per_pixel_ci_low": ci_px.low if ci_px else math.nan,
                        "mse_per_pixel_ci_high": ci_px.high if ci_px else math.nan,
                    }
                )
    frame = pd.DataFrame(rows, columns=RESULTS_COLUMNS)
    if frame.empty:
        return frame
    method_order = {m: i for i, m in enumerate(_ordered(frame["method"], methods))}
    dataset_order = {d: i for i, d in enumerate(_ordered(frame["dataset"], datasets))}
    frame = frame.assign(
        _d=frame["dataset"].map(dataset_order), _m=frame["method"].map(method_order)
    ).sort_values(["_d", "_m", "nz", "bn_mode", "split"], kind="stable")
    return frame.drop(columns=["_d", "_m"]).reset_index(drop=True)


def histories_long(runs: Sequence[Run]) -> pd.DataFrame:
    """Training histories in long format for :func:`figures.plot_training_curves`."""
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
        return pd.DataFrame(columns=[*figures.HISTORY_COLUMNS, "images_seen", "wall_seconds"])
    return pd.concat(frames, ignore_index=True)


def references_frame(references: Mapping[str, dict[str, Any] | None]) -> pd.DataFrame:
    """Reference losses as rows (dataset, name, nz, sse_per_image, mse_per_pixel)."""
    rows = []
    for dataset, ref in references.items():
        if not ref:
            continue
        for key, label in REFERENCE_LABELS.items():
            if key in ref:
                rows.append({"dataset": dataset, "name": label, "nz": math.nan, **_units(ref[key])})
        for nz, vals in sorted(ref.get("pca", {}).items(), key=lambda kv: int(kv[0])):
            rows.append(
                {"dataset": dataset, "name": f"PCA, {nz} components", "nz": int(nz), **_units(vals)}
            )
    cols = ["dataset", "name", "nz", *UNITS]
    return pd.DataFrame(rows, columns=cols)


def _units(vals: Mapping[str, Any]) -> dict[str, float]:
    return {u: float(vals[u]) if u in vals else math.nan for u in UNITS}


def _ci_of(results: pd.DataFrame, unit: str, **where: Any) -> MeanCI | None:
    """The summarised interval for one results row, or None when it was not measured."""
    sel = results
    for key, value in where.items():
        sel = sel[sel[key] == value]
    if sel.empty:
        return None
    r = sel.iloc[0]
    if unit == "sse_per_image":
        return MeanCI(
            mean=r["mean"], low=r["ci_low"], high=r["ci_high"], n=int(r["n"]), std=r["std"]
        )
    return MeanCI(
        mean=r["mse_per_pixel_mean"],
        low=r["mse_per_pixel_ci_low"],
        high=r["mse_per_pixel_ci_high"],
        n=int(r["n"]),
        std=math.nan,
    )


@dataclass(frozen=True)
class Comparison:
    """Which of two methods had the lower mean held-out loss, and whether the CIs overlap."""

    nz: int
    lower: str
    higher: str
    lower_ci: MeanCI
    higher_ci: MeanCI
    overlap: bool | None  # None: undefined interval (one seed)
    tie: bool

    @property
    def ratio(self) -> float:
        """higher / lower mean: how many times larger the worse method's loss is."""
        return self.higher_ci.mean / self.lower_ci.mean if self.lower_ci.mean else math.inf


def compare_methods(cis: Mapping[str, MeanCI], nz: int) -> Comparison | None:
    """Best vs runner-up by mean loss; None with fewer than two methods measured."""
    if len(cis) < 2:
        return None
    (best, best_ci), (second, second_ci) = sorted(cis.items(), key=lambda kv: kv[1].mean)[:2]
    return Comparison(
        nz=nz,
        lower=method_label(best),
        higher=method_label(second),
        lower_ci=best_ci,
        higher_ci=second_ci,
        overlap=best_ci.overlaps(second_ci),
        tie=best_ci.mean == second_ci.mean,
    )


@dataclass
class DatasetSection:
    """Everything the template shows for one dataset."""

    name: str
    label: str
    status: str  # "run" | "not run"
    nzs: list[int] = field(default_factory=list)
    headline_rows: list[dict[str, Any]] = field(default_factory=list)
    reference_rows: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    missing_methods: list[str] = field(default_factory=list)
    bn_rows: list[dict[str, Any]] = field(default_factory=list)
    bn_ratios: list[dict[str, Any]] = field(default_factory=list)
    spread_rows: list[dict[str, Any]] = field(default_factory=list)


def _headline_rows(
    results: pd.DataFrame, dataset: str, methods: Sequence[str], nzs: Sequence[int], bn: str
) -> tuple[list[dict[str, Any]], list[Comparison]]:
    rows, comparisons = [], []
    for nz in nzs:
        cis: dict[str, MeanCI] = {}
        for method in methods:
            key = {"dataset": dataset, "method": method, "nz": nz, "bn_mode": bn, "split": "test"}
            sse = _ci_of(results, "sse_per_image", **key)
            if sse is None:
                continue
            cis[method] = sse
            rows.append(
                {
                    "method": method_label(method),
                    "nz": nz,
                    "n": sse.n,
                    "sse": sse,
                    "mse": _ci_of(results, "mse_per_pixel", **key),
                }
            )
        comparison = compare_methods(cis, nz)
        if comparison is not None:
            comparisons.append(comparison)
    return rows, comparisons


def _reference_rows(refs: pd.DataFrame, dataset: str, nzs: Sequence[int]) -> list[dict[str, Any]]:
    sel = refs[refs["dataset"] == dataset]
    sel = sel[sel["nz"].isna() | sel["nz"].isin(list(nzs))]
    return [
        {"name": r["name"], "sse": r["sse_per_image"], "mse": r["mse_per_pixel"]}
        for _, r in sel.iterrows()
    ]


def _bn_rows(
    results: pd.DataFrame,
    dataset: str,
    methods: Sequence[str],
    nzs: Sequence[int],
    modes: Sequence[str],
) -> list[dict[str, Any]]:
    rows = []
    for nz in nzs:
        for method in methods:
            for mode in modes:
                key = {"dataset": dataset, "method": method, "nz": nz, "bn_mode": mode}
                cells = {
                    f"{split}_{unit}": _ci_of(results, unit, split=split, **key)
                    for split in SPLITS
                    for unit in UNITS
                }
                if all(v is None for v in cells.values()):
                    continue
                n = max((c.n for c in cells.values() if c is not None), default=0)
                rows.append(
                    {
                        "method": method_label(method),
                        "nz": nz,
                        "bn": bn_label(mode),
                        "n": n,
                        **cells,
                    }
                )
    return rows


def _bn_ratios(
    runs: Sequence[Run], methods: Sequence[str], nzs: Sequence[int]
) -> list[dict[str, Any]]:
    """running / batch test loss per method: ratio of means and per-seed range."""
    out = []
    for nz in nzs:
        for method in methods:
            group = [r for r in runs if r.method == method and r.nz == nz]
            pairs = [
                (run_v, batch_v)
                for r in group
                if (run_v := _loss(r, "running", "test", "sse_per_image")) is not None
                and (batch_v := _loss(r, "batch", "test", "sse_per_image")) is not None
            ]
            if not pairs:
                continue
            running_mean = sum(p[0] for p in pairs) / len(pairs)
            batch_mean = sum(p[1] for p in pairs) / len(pairs)
            per_seed = [a / b for a, b in pairs if b > 0]
            norms = {
                mode: [v for r in group if (v := _latent_norm(r, mode)) is not None]
                for mode in ("running", "batch")
            }
            out.append(
                {
                    "method": method_label(method),
                    "nz": nz,
                    "n": len(pairs),
                    "running": running_mean,
                    "batch": batch_mean,
                    "ratio": running_mean / batch_mean if batch_mean > 0 else math.inf,
                    "ratio_min": min(per_seed) if per_seed else math.nan,
                    "ratio_max": max(per_seed) if per_seed else math.nan,
                    "latent_norm_running": sum(norms["running"]) / len(norms["running"])
                    if norms["running"]
                    else None,
                    "latent_norm_batch": sum(norms["batch"]) / len(norms["batch"])
                    if norms["batch"]
                    else None,
                }
            )
    return out


def _spread_rows(
    runs: Sequence[Run], methods: Sequence[str], nzs: Sequence[int], bn: str
) -> list[dict[str, Any]]:
    """Batch-order spread of the test loss, relative to the loss itself, per configuration."""
    out = []
    for nz in nzs:
        for method in methods:
            group = [r for r in runs if r.method == method and r.nz == nz]
            spreads = [
                r.metrics["batch_order_spread"]
                for r in group
                if r.metrics.get("batch_order_spread")
            ]
            if not spreads:
                continue
            stds = [float(s["test_sse_per_image_std"]) for s in spreads]
            diffs = [float(s["test_sse_per_image_max_abs_diff"]) for s in spreads]
            losses = [v for r in group if (v := _loss(r, bn, "test", "sse_per_image")) is not None]
            mean_loss = sum(losses) / len(losses) if losses else math.nan
            out.append(
                {
                    "method": method_label(method),
                    "nz": nz,
                    "n": len(spreads),
                    "shuffles": sorted({int(s.get("shuffles", 0)) for s in spreads}),
                    "std_mean": sum(stds) / len(stds),
                    "max_abs_diff": max(diffs),
                    "relative": max(diffs) / mean_loss if mean_loss > 0 else math.nan,
                }
            )
    return out


def dataset_sections(
    datasets: Sequence[str],
    runs: Sequence[Run],
    results: pd.DataFrame,
    refs: pd.DataFrame,
    *,
    methods: Sequence[str],
    headline_bn: str,
) -> list[DatasetSection]:
    """One section per dataset listed in params (plus any found on disk); absent ones 'not run'."""
    sections = []
    for dataset in datasets:
        ds_runs = [r for r in runs if r.dataset == dataset]
        section = DatasetSection(
            name=dataset, label=dataset_label(dataset), status="run" if ds_runs else "not run"
        )
        if ds_runs:
            ds_methods = _ordered((r.method for r in ds_runs), methods)
            section.nzs = sorted({r.nz for r in ds_runs})
            section.missing_methods = [method_label(m) for m in methods if m not in ds_methods]
            section.headline_rows, section.comparisons = _headline_rows(
                results, dataset, ds_methods, section.nzs, headline_bn
            )
            section.reference_rows = _reference_rows(refs, dataset, section.nzs)
            section.bn_rows = _bn_rows(
                results, dataset, ds_methods, section.nzs, _bn_modes(ds_runs)
            )
            section.bn_ratios = _bn_ratios(ds_runs, ds_methods, section.nzs)
            section.spread_rows = _spread_rows(ds_runs, ds_methods, section.nzs, headline_bn)
        sections.append(section)
    return sections


# --------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------


def _published_text(claim: Mapping[str, Any]) -> str:
    """Published value as printed in the source (2.40 stays "2.40")."""
    value = claim["value"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.{int(claim.get('decimals', 2))}f}"
    return str(value)


def _ours_cell(
    results: pd.DataFrame,
    datasets_run: set[str],
    datasets_listed: set[str],
    dataset: str,
    nz: int,
    method: str,
    split: str,
    bn: str,
) -> dict[str, Any]:
    """Our matching number, or an explicit reason why there is none."""
    if dataset not in datasets_listed and dataset not in datasets_run:
        return {"ci": None, "reason": "dataset not in this study"}
    if dataset not in datasets_run:
        return {"ci": None, "reason": "dataset not run in this profile"}
    ci = _ci_of(
        results, "sse_per_image", dataset=dataset, method=method, nz=nz, bn_mode=bn, split=split
    )
    if ci is None:
        return {"ci": None, "reason": "no main run at this nz in this profile"}
    return {"ci": ci, "reason": None}


def published_section(
    claims: Mapping[str, Any],
    results: pd.DataFrame,
    *,
    datasets_run: set[str],
    datasets_listed: set[str],
    bn_modes: Sequence[str],
) -> dict[str, Any]:
    """Table 1 and the Julia reproduction next to our numbers at matching (dataset, nz)."""
    items = claims["claims"]
    sources = claims["sources"]

    def ours(dataset: str, nz: int, method: str, split: str) -> dict[str, dict[str, Any]]:
        return {
            mode: _ours_cell(
                results, datasets_run, datasets_listed, dataset, nz, method, split, mode
            )
            for mode in bn_modes
        }

    table1 = [
        {
            "claim": c,
            "dataset": dataset_label(c["dataset"]),
            "published": _published_text(c),
            "ours": ours(c["dataset"], int(c["nz"]), "gon", c["split"]),
        }
        for c in items
        if c["id"].startswith("repro-table1-")
    ]
    julia = []
    for c in items:
        if not c["id"].startswith("julia-test-"):
            continue
        ae_id = c["id"].replace("julia-test-", "julia-ae-test-")
        ae = next((a for a in items if a["id"] == ae_id), None)
        julia.append(
            {
                "claim": c,
                "dataset": dataset_label(c["dataset"]),
                "nz": c["nz"],
                "gon_published": _published_text(c),
                "ae_published": _published_text(ae) if ae else "not available",
                "ours_gon": ours(c["dataset"], int(c["nz"]), "gon", "test"),
                "ours_ae": ours(c["dataset"], int(c["nz"]), "ae", "test"),
            }
        )
    return {
        "table1": table1,
        "table1_source": sources["repro_report"]["cite"],
        "table1_unit": next(
            (c["unit"] for c in items if c["id"].startswith("repro-table1-")), None
        ),
        "julia": julia,
        "julia_source": sources["julia_repro"],
        "sources": sources,
    }


def parameters_section(
    runs: Sequence[Run], claims: Mapping[str, Any], methods: Sequence[str]
) -> dict[str, Any]:
    """n_params per method and nz (from metrics), the GON/AE ratio, and the published counts."""
    counts: dict[tuple[str, int], set[int]] = {}
    for r in runs:
        if "n_params" in r.metrics:
            counts.setdefault((r.method, r.nz), set()).add(int(r.metrics["n_params"]))
    order = {m: i for i, m in enumerate(methods)}
    rows = [
        {"method": method_label(m), "method_id": m, "nz": nz, "n_params": sorted(v)}
        for (m, nz), v in sorted(
            counts.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])
        )
    ]
    ratios = []
    for nz in sorted({nz for _, nz in counts}):
        gon, ae = counts.get(("gon", nz)), counts.get(("ae", nz))
        if gon and ae and len(gon) == 1 and len(ae) == 1:
            g, a = next(iter(gon)), next(iter(ae))
            ratios.append({"nz": nz, "gon": g, "ae": a, "ratio": g / a})
    pub = published_parameter_ratio(claims)
    inconsistent = [row for row in rows if len(row["n_params"]) > 1]
    return {"rows": rows, "ratios": ratios, "published": pub, "inconsistent": inconsistent}


# --------------------------------------------------------------------------------------------
# Protocol differences, provenance
# --------------------------------------------------------------------------------------------


def _protocol_values(claims: Mapping[str, Any] | None = None) -> dict[str, Any]:
    claims = claims if claims is not None else load_claims()
    return {k: v["value"] for k, v in claims["protocol"].items()}


def _fmt_list(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def protocol_differences(
    params: Mapping[str, Any],
    claims: Mapping[str, Any] | None = None,
    *,
    resize_methods: Sequence[str] = (),
) -> list[str]:
    """How this run's protocol differs from the published one, one sentence per difference.

    Derived from params and the published protocol in claims.yaml, never typed, so a change of
    profile changes the list. Items about evaluation are always present: the original code has
    no held-out evaluation at all, so anything we measure on test data is a difference.
    ``resize_methods`` are the resize descriptions recorded in the data manifests.
    """
    pub = _protocol_values(claims)
    train, data, model = params.get("train", {}), params.get("data", {}), params.get("model", {})
    evaluate = params.get("evaluate", {})
    out: list[str] = []

    epochs, train_images = train.get("epochs"), train.get("train_images")
    batch_size = train.get("batch_size")
    steps_images = pub["gon_py_steps"] * pub["batch_size"]
    out.append(
        f"Training length: {epochs} epochs here; Table 1 of the reproducibility report used "
        f"{pub['table1_epochs']} epochs, and GON.py runs {pub['gon_py_steps']:,} optimiser steps "
        f"(not epochs): {steps_images:,} images at batch {pub['batch_size']}, about "
        f"{steps_images / pub['train_images']:.2f} passes over {pub['train_images']:,} images."
    )
    if train_images != pub["train_images"]:
        out.append(
            f"Training images: {train_images:,} per epoch here vs {pub['train_images']:,} in the "
            "published training split."
        )
    nz = list(model.get("nz", []))
    missing_t1 = [v for v in pub["nz_table1"] if v not in nz]
    if sorted(nz) != sorted(pub["nz_gon_py"]) or missing_t1:
        out.append(
            f"Latent size: nz = {_fmt_list(nz)} here; GON.py uses nz = {_fmt_list(pub['nz_gon_py'])}, "
            f"Table 1 reports nz = {_fmt_list(pub['nz_table1'])}"
            + (f" (not trained here: {_fmt_list(missing_t1)})." if missing_t1 else ".")
        )
    seeds = list(train.get("seeds", []))
    out.append(
        f"Seeds: {len(seeds)} per configuration here (seeds {_fmt_list(seeds)}), summarised as mean "
        f"and confidence interval; the published numbers are {pub['seeds']} run each, without error bars."
    )
    out.append(
        "Held-out evaluation: losses are measured on the held-out test split (and validation), with "
        "BatchNorm in both running-statistics and batch-statistics mode. The original code never "
        "evaluated on held-out data (GON.py has no validation or test code; the reproducibility "
        "report's test code is not public), so neither mode is known to match theirs."
    )
    out.append(
        f"Evaluation batching: fixed evaluation batch size {evaluate.get('batch_size')} and the GON "
        f"inner loss normalised by the training batch size ({batch_size}), so an image's latent "
        "does not depend on how many images share its batch."
    )
    if batch_size and train_images:
        dropped = train_images % batch_size
        effect = (
            f"{dropped} images left out per epoch"
            if dropped
            else "here it divides evenly, so no image is left out"
        )
        out.append(
            "Incomplete batches: the last incomplete training batch is dropped, so every step "
            f"sees the batch size GON.py's inner loss assumes ({train_images:,} images at batch "
            f"{batch_size}: {train_images // batch_size:,} full batches; {effect})."
        )
    size = data.get("image_size")
    methods = sorted(set(resize_methods))
    how = f" with {'; '.join(methods)}" if methods else " (resize method not recorded)"
    out.append(f"Resize: images are resized to {size}×{size}{how}; GON.py used {pub['resize']}.")
    optional = (
        ("Learning rate", train.get("lr"), pub["lr"]),
        ("Activation", model.get("activation"), pub["activation"]),
        ("Batch size", batch_size, pub["batch_size"]),
        ("GON latent gradient steps", train.get("gon_steps"), pub["gon_steps"]),
    )
    out.extend(
        f"{label}: {ours} here vs {published} in GON.py."
        for label, ours, published in optional
        if ours is not None and ours != published
    )
    out.extend(_gfe_differences(params, size))
    return out


def _gfe_differences(params: Mapping[str, Any], image_size: Any) -> list[str]:
    """Where the GFE studies depart from the GFE code (protocol §4), from params."""
    eff, gfe = params.get("efficiency") or {}, params.get("gfe") or {}
    if not eff:
        return []
    out = []
    if eff.get("architecture") == "mlp" and image_size != 28:
        out.append(
            f"GFE decoder: the GFE code's MLP (nz → 150 → 300 → 600 → 784 on 28×28 images) ends here in "
            f"{image_size}×{image_size} = {image_size * image_size:,} outputs, the study's resolution."
        )
    steps, batch = eff.get("steps"), eff.get("batch_size")
    if steps is not None and batch is not None:
        out.append(
            f"GFE training length: {steps:,} steps of batch {batch} ({steps * batch:,} images seen) per run; "
            "the GFE code trains one epoch over 50,000 images."
        )
    if gfe.get("tau") is not None and gfe["tau"] != 1e4:
        out.append(f"GFE flow horizon: τ = {gfe['tau']:g} here vs 1e4 in the GFE code.")
    if eff.get("eval_images") is not None:
        out.append(
            f"GFE evaluation: {eff['eval_images']:,} held-out test images per evaluation point "
            "(the GFE code validates on held-out images of its own choice)."
        )
    return out


def _keys_containing(obj: Any, word: str, prefix: str = "") -> list[tuple[str, str]]:
    """All (dotted key, value) leaves whose key mentions ``word``, at any depth.

    The manifests are written by another module; walking them generically keeps the report
    working when their nesting changes.
    """
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if word in str(k).lower() and not isinstance(v, (Mapping, list)):
                out.append((key, str(v)))
            else:
                out.extend(_keys_containing(v, word, key))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_keys_containing(v, word, f"{prefix}[{i}]"))
    return out


def _resize_entries(obj: Any) -> list[tuple[str, str]]:
    """(dotted key, value) for keys describing the resize (not the hashes of resized images)."""
    return [(k, v) for k, v in _keys_containing(obj, "resize") if "sha256" not in k.lower()]


def _sha_entries(obj: Any) -> list[tuple[str, str]]:
    """(dotted key, digest) for every key mentioning sha256 in a manifest.

    The ``expected`` twins are left out: a manifest is only written when every actual hash
    equals its expected one (its ``verified`` flag says whether pinned hashes existed).
    """
    return [(k, v) for k, v in _keys_containing(obj, "sha256") if "expected" not in k.lower()]


def _compute_seconds(
    runs: Sequence[Run],
    eff_runs: Sequence[EfficiencyRun],
    study_runs: Sequence[StudyRun],
    convergence: Mapping[str, Any],
    bench: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Measured compute per part of the study, as each stage recorded it (start-up excluded)."""
    main = sum(
        float(r.metrics.get("train_seconds") or 0.0) + float(r.metrics.get("eval_seconds") or 0.0)
        for r in runs
    )
    eff = sum(float(r.metrics.get("wall_seconds") or 0.0) for r in eff_runs)
    study = sum(r.value("train_seconds") or 0.0 for r in study_runs)
    conv = sum(
        float(f.get("seconds") or 0.0)
        for item in convergence.get("items", [])
        for f in (item.get("summary") or {}).get("flows", {}).values()
    )
    bench_s = sum(float(r.get("seconds") or 0.0) for r in (bench or {}).get("results", []))
    parts = [
        ("main GON/AE/linear-AE runs (training + evaluation)", main),
        ("ablation studies: activation, multi-step, latent size (training)", study),
        ("GFE data-efficiency runs", eff),
        ("GFE convergence study (solvers)", conv),
        ("GFE decoder-gradient benchmark", bench_s),
    ]
    return [{"part": p, "seconds": s} for p, s in parts if s > 0]


def provenance_section(
    runs: Sequence[Run],
    manifests: Mapping[str, dict[str, Any] | None],
    provenance: Mapping[str, Any],
    *,
    compute: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    train_s = sum(float(r.metrics.get("train_seconds") or 0.0) for r in runs)
    eval_s = sum(float(r.metrics.get("eval_seconds") or 0.0) for r in runs)
    return {
        "compute": list(compute),
        "compute_total": sum(float(c["seconds"]) for c in compute),
        "entries": list(provenance.items()),
        "manifests": [
            {
                "dataset": dataset_label(d),
                "present": m is not None,
                "source": (m or {}).get("source"),
                "verified": (m or {}).get("verified"),
                "hashes": _sha_entries(m or {}),
                "resize": _resize_entries(m or {}),
            }
            for d, m in manifests.items()
        ],
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "total_seconds": train_s + eval_s,
        "runs": [
            {
                "name": r.name,
                "device": r.metrics.get("device"),
                "train_seconds": r.metrics.get("train_seconds"),
                "eval_seconds": r.metrics.get("eval_seconds"),
                "mlflow_run_id": r.metrics.get("mlflow_run_id"),
            }
            for r in sorted(runs, key=lambda r: r.name)
        ],
    }


def _consistency_warnings(
    runs: Sequence[Run], params: Mapping[str, Any], headline_bn: str
) -> list[str]:
    """Runs produced under another profile or headline mode would silently mix protocols."""
    out = []
    profile = params.get("profile")
    other = sorted({r.name for r in runs if r.metrics.get("profile") not in (None, profile)})
    if other:
        out.append(f"runs from a profile other than `{profile}`: {', '.join(other)}")
    other_bn = sorted(
        {r.name for r in runs if r.metrics.get("headline_bn") not in (None, headline_bn)}
    )
    if other_bn:
        out.append(
            f"runs whose metrics name a headline BN mode other than `{headline_bn}`: {', '.join(other_bn)}"
        )
    return out


# --------------------------------------------------------------------------------------------
# Gradient Flow Encoding studies (protocol §4): data efficiency, convergence, decoder gradients
# --------------------------------------------------------------------------------------------


def _study_loss(runs: Sequence[EfficiencyRun], eff: Mapping[str, Any]) -> str:
    """The study loss: the one the runs' metrics name when they agree, else the params' one."""
    named = {str(r.metrics["loss"]) for r in runs if r.metrics.get("loss")}
    if len(named) == 1:
        return next(iter(named))
    return str(eff.get("loss", "sse"))


def _efficiency_warnings(
    runs: Sequence[EfficiencyRun], eff: Mapping[str, Any], params: Mapping[str, Any], loss: str
) -> list[str]:
    """Runs made under other settings than the params' would silently mix protocols."""
    out = []
    for key in EFFICIENCY_SETTINGS:
        if key not in eff:
            continue
        other = sorted(
            r.name for r in runs if r.metrics.get(key) is not None and r.metrics[key] != eff[key]
        )
        if other:
            out.append(
                f"efficiency runs with {key} other than {eff[key]!r} (params): {', '.join(other)}"
            )
    profile = params.get("profile")
    other = sorted(r.name for r in runs if r.metrics.get("profile") not in (None, profile))
    if other:
        out.append(f"efficiency runs from a profile other than `{profile}`: {', '.join(other)}")
    unscored = sorted(r.name for r in runs if r.final(f"test_{loss}") is None)
    if unscored:
        out.append(f"efficiency runs without a final test_{loss}: {', '.join(unscored)}: left out")
    return out


def _mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def efficiency_frames(
    runs: Sequence[EfficiencyRun], loss: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(finals, curves): one row per scored run, and one per run × evaluation point.

    ``finals`` columns: dataset, method, train_size, seed, final_loss (study unit), final_sse
    (SSE per image), train_seconds, train_nfe, encode_seconds, encode_nfe. ``curves`` is the
    long format of :func:`figures.plot_efficiency_curves` (test_loss in the study unit).
    """
    final_rows, curve_frames = [], []
    for r in runs:
        value = r.final(f"test_{loss}")
        if value is None:
            continue
        sse = r.final("test_sse_per_image")
        final_rows.append(
            {
                "dataset": r.dataset,
                "method": r.method,
                "train_size": r.train_size,
                "seed": r.seed,
                "final_loss": value,
                "final_sse": math.nan if sse is None else sse,
                **{
                    out: math.nan if (v := r.final(key)) is None else v
                    for out, key in (
                        ("train_seconds", "train_seconds"),
                        ("train_nfe", "train_nfe"),
                        ("encode_seconds", "test_encode_seconds"),
                        ("encode_nfe", "test_encode_nfe"),
                    )
                },
            }
        )
        c = r.curve
        needed = ("step", "images_seen", "train_seconds", f"test_{loss}")
        if c is not None and not c.empty and all(col in c for col in needed):
            curve_frames.append(
                pd.DataFrame(
                    {
                        "dataset": r.dataset,
                        "train_size": r.train_size,
                        "method": r.method,
                        "seed": r.seed,
                        "step": c["step"].astype(int),
                        "images_seen": c["images_seen"].astype(float),
                        "train_seconds": c["train_seconds"].astype(float),
                        "test_loss": c[f"test_{loss}"].astype(float),
                    }
                )
            )
    finals = pd.DataFrame(
        final_rows,
        columns=[
            "dataset",
            "method",
            "train_size",
            "seed",
            "final_loss",
            "final_sse",
            "train_seconds",
            "train_nfe",
            "encode_seconds",
            "encode_nfe",
        ],
    )
    curves = (
        pd.concat(curve_frames, ignore_index=True)
        if curve_frames
        else pd.DataFrame(columns=["dataset", *figures.EFFICIENCY_CURVE_COLUMNS])
    )
    return finals, curves


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def efficiency_results(
    finals: pd.DataFrame, loss: str, *, confidence: float, nz: Mapping[str, Any]
) -> pd.DataFrame:
    """results.csv rows for the efficiency finals (one per dataset × method × train size).

    ``mean``/``ci_*`` are in SSE per image like every other row; the study loss has its own
    columns. ``nz`` maps a method to the latent size its runs recorded.
    """
    rows = []
    for (dataset, method, size), group in finals.groupby(
        ["dataset", "method", "train_size"], sort=False
    ):
        study = mean_ci(group["final_loss"], confidence)
        sse_values = _finite(group["final_sse"])
        sse = mean_ci(sse_values, confidence) if sse_values else None
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "nz": nz.get(method),
                "bn_mode": "none",
                "split": "test",
                "headline": False,
                "n": study.n,
                "confidence": confidence,
                "unit": "sse_per_image",
                "mean": sse.mean if sse else math.nan,
                "ci_low": sse.low if sse else math.nan,
                "ci_high": sse.high if sse else math.nan,
                "std": sse.std if sse else math.nan,
                "mse_per_pixel_mean": math.nan,
                "mse_per_pixel_ci_low": math.nan,
                "mse_per_pixel_ci_high": math.nan,
                "train_size": int(size),
                "loss": loss,
                "loss_mean": study.mean,
                "loss_ci_low": study.low,
                "loss_ci_high": study.high,
                "train_seconds_mean": _mean_or_none(_finite(group["train_seconds"])),
                "train_nfe_mean": _mean_or_none(_finite(group["train_nfe"])),
            }
        )
    return pd.DataFrame(rows, columns=[*RESULTS_COLUMNS, *EFFICIENCY_COLUMNS])


def _efficiency_setting(
    eff: Mapping[str, Any], gfe: Mapping[str, Any], runs: Sequence[EfficiencyRun], loss: str
) -> tuple[str, str | None]:
    """(study setting, GFE encoder setting) sentences from params, the runs' metrics as fallback."""
    first = runs[0].metrics if runs else {}

    def get(key: str) -> Any:
        return eff.get(key, first.get(key))

    steps, batch = get("steps"), get("batch_size")
    seen = f" ({steps * batch:,} training images seen per run)" if steps and batch else ""
    sizes = eff.get("train_sizes") or sorted({r.train_size for r in runs})
    seeds = eff.get("seeds") or sorted({r.seed for r in runs})
    points = eff.get("eval_points")
    when = f" at {points} points during training plus step 0" if points else " during training"
    setting = (
        f"{dataset_label(str(get('dataset') or (runs[0].dataset if runs else 'n/a')))}, "
        f"{str(get('architecture')).upper()} decoder, nz {get('nz')}; {steps} optimiser steps × "
        f"batch {batch}{seen}, each batch drawn from only the first n training images "
        f"(n = {_fmt_list(f'{int(s):,}' for s in sizes)}); RMSprop, learning rate {get('lr')}; "
        f"training and test loss {loss_label(loss)}; {get('eval_images')} held-out test images "
        f"scored{when}; seeds {_fmt_list(seeds)}."
    )
    methods = {r.method for r in runs}
    if not methods & {"gfe", "gfe2", "gfe_adaptive"} or not gfe:
        return setting, None
    adaptive = gfe.get("adaptive") or {}
    parts = [
        f"GFE encoders: z(0) = 0, flow dz/dt = −α∇_z ℓ with α = {gfe.get('alpha')} and ℓ the "
        f"study loss, integrated to τ = {gfe.get('tau')}"
    ]
    if methods & {"gfe", "gfe2"}:
        parts.append(
            f"the 1st- and 2nd-order flows use the `{gfe.get('solver')}` solver "
            f"(rtol {gfe.get('rtol')}, atol {gfe.get('atol')})"
        )
    if "gfe_adaptive" in methods:
        parts.append(
            f"the adaptive step starts at h = {adaptive.get('h0')} with h_max = "
            f"{adaptive.get('h_max')} and σ = {adaptive.get('sigma')}"
        )
    parts.append(
        f"at most {gfe.get('max_nfe')} gradient evaluations per encode; decoder gradient mode "
        f"`{gfe.get('grad_mode')}`."
    )
    encoder = "; ".join(parts)
    return setting, encoder


def _efficiency_findings(rows: Sequence[dict[str, Any]], sizes: Sequence[int]) -> list[dict]:
    """Per train size: lowest mean final test loss vs the runner-up, and each GFE vs the AE."""
    out = []
    for size in sizes:
        mine = {r["method_id"]: r for r in rows if r["train_size"] == size}
        comparison = compare_methods({m: r["loss"] for m, r in mine.items()}, size)
        vs_ae = []
        ae = mine.get("ae")
        for method, r in mine.items():
            if not method.startswith("gfe") or ae is None:
                continue
            t_gfe, t_ae = r["train_seconds"], ae["train_seconds"]
            time_ratio = None
            if t_gfe is not None and t_ae is not None:
                time_ratio = t_gfe / t_ae if t_ae > 0 else math.inf
            vs_ae.append(
                {
                    "method": method_label(method),
                    "time_ratio": time_ratio,
                    "seconds": t_gfe,
                    "ae_seconds": t_ae,
                    "loss": r["loss"],
                    "ae_loss": ae["loss"],
                    "lower": r["loss"].mean < ae["loss"].mean,
                    "tie": r["loss"].mean == ae["loss"].mean,
                    "overlap": r["loss"].overlaps(ae["loss"]),
                }
            )
        if comparison is not None or vs_ae:
            out.append({"train_size": size, "lowest": comparison, "vs_ae": vs_ae})
    return out


def efficiency_section(
    runs: Sequence[EfficiencyRun],
    finals: pd.DataFrame,
    params: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    loss: str,
    methods: Sequence[str],
    confidence: float,
) -> dict[str, Any]:
    """Table, findings and settings of the data-efficiency study (status "not run" without runs)."""
    eff = params.get("efficiency", {}) or {}
    base = {
        "status": "run" if not finals.empty else "not run",
        "claims": claims_by_id(claims, GFE_CLAIMS["efficiency"]),
        "loss": loss,
        "loss_label": loss_label(loss),
        "show_sse": loss != "sse",
        "rows": [],
        "findings": [],
        "missing": [],
        "setting": None,
        "gfe_setting": None,
        "datasets": [],
    }
    if finals.empty:
        return base
    sizes = sorted(int(s) for s in finals["train_size"].unique())
    rows = []
    for size in sizes:
        for method in _ordered(finals["method"], methods):
            g = finals[(finals["train_size"] == size) & (finals["method"] == method)]
            if g.empty:
                continue
            sse = _finite(g["final_sse"])
            rows.append(
                {
                    "train_size": size,
                    "method_id": method,
                    "method": method_label(method),
                    "n": len(g),
                    "loss": mean_ci(g["final_loss"], confidence),
                    "sse": mean_ci(sse, confidence) if sse else None,
                    "train_seconds": _mean_or_none(_finite(g["train_seconds"])),
                    "train_nfe": _mean_or_none(_finite(g["train_nfe"])),
                    "encode_seconds": _mean_or_none(_finite(g["encode_seconds"])),
                    "encode_nfe": _mean_or_none(_finite(g["encode_nfe"])),
                }
            )
    found = {(r.method, r.train_size, r.seed) for r in runs}
    expected = [
        (m, int(n), int(s))
        for m in eff.get("methods", [])
        for n in eff.get("train_sizes", [])
        for s in eff.get("seeds", [])
    ]
    setting, gfe_setting = _efficiency_setting(eff, params.get("gfe", {}) or {}, runs, loss)
    return base | {
        "rows": rows,
        "findings": _efficiency_findings(rows, sizes),
        "missing": [f"{m}-n{n}-s{s}" for m, n, s in expected if (m, n, s) not in found],
        "n_runs": len(finals),
        "setting": setting,
        "gfe_setting": gfe_setting,
        "datasets": [dataset_label(d) for d in dict.fromkeys(finals["dataset"])],
        "eval_images": eff.get("eval_images", runs[0].metrics.get("eval_images") if runs else None),
    }


def _per_image(curves: pd.DataFrame, flow: str, iteration: int) -> pd.Series:
    sel = curves[(curves["flow"] == flow) & (curves["iteration"] == iteration)]
    return sel.set_index("image")["loss"].astype(float).sort_index()


def _paired(
    curves: pd.DataFrame, a: tuple[str, int], b: tuple[str, int], confidence: float
) -> dict[str, Any]:
    """Mean per-image loss of flow a at iteration a[1] vs flow b at b[1], paired over images."""
    la, lb = _per_image(curves, *a), _per_image(curves, *b)
    common = la.index.intersection(lb.index)
    la, lb = la.loc[common], lb.loc[common]
    diff = paired_difference(la.to_numpy(), lb.to_numpy(), confidence)
    return {
        "a": float(la.mean()),
        "b": float(lb.mean()),
        "lower": bool(la.mean() < lb.mean()),
        "tie": bool(la.mean() == lb.mean()),
        "diff": diff,
        "resolved": (None if math.isnan(diff.low) else bool(diff.high < 0.0 or diff.low > 0.0)),
        "images": int(len(common)),
    }


def _last_iteration(curves: pd.DataFrame, flow: str, max_nfe: float | None = None) -> int | None:
    sel = curves[curves["flow"] == flow]
    if max_nfe is not None:
        sel = sel[sel["nfe"] <= max_nfe]
    return None if sel.empty else int(sel["iteration"].max())


def _convergence_findings(
    summary: Mapping[str, Any], curves: pd.DataFrame | None, confidence: float
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(2nd vs 1st order at the last common iteration, adaptive vs 1st order per gradient eval).

    With the per-image curves both are paired over the test images; with only summary.json the
    final means are compared where the summary allows it (equal iterations; one flow lower in
    loss with no more gradient evaluations) and None is returned otherwise.
    """
    flows = summary.get("flows", {}) or {}
    second = adaptive = None
    if curves is not None and not curves.empty:
        have = set(curves["flow"])
        if {"first_order", "second_order"} <= have:
            it = min(_last_iteration(curves, f) or 0 for f in ("first_order", "second_order"))
            second = {
                "iteration": it,
                "from_curves": True,
                **_paired(curves, ("second_order", it), ("first_order", it), confidence),
            }
        if {"first_order", "adaptive_step"} <= have:
            budget = min(
                float(curves.loc[curves["flow"] == f, "nfe"].max())
                for f in ("first_order", "adaptive_step")
            )
            it_a = _last_iteration(curves, "adaptive_step", budget)
            it_f = _last_iteration(curves, "first_order", budget)
            if it_a is not None and it_f is not None:
                nfe_of = curves.groupby(["flow", "iteration"])["nfe"].max()
                adaptive = {
                    "budget": budget,
                    "from_curves": True,
                    "iteration_a": it_a,
                    "iteration_b": it_f,
                    "nfe_a": float(nfe_of[("adaptive_step", it_a)]),
                    "nfe_b": float(nfe_of[("first_order", it_f)]),
                    **_paired(curves, ("adaptive_step", it_a), ("first_order", it_f), confidence),
                }
        return second, adaptive
    f1, f2, fa = (flows.get(k) for k in ("first_order", "second_order", "adaptive_step"))
    if f1 and f2 and f1.get("iterations") == f2.get("iterations"):
        a, b = float(f2["final_mean_loss"]), float(f1["final_mean_loss"])
        second = {
            "iteration": int(f1["iterations"]),
            "from_curves": False,
            "a": a,
            "b": b,
            "lower": a < b,
            "tie": a == b,
        }
    if f1 and fa:
        la, lb = float(fa["final_mean_loss"]), float(f1["final_mean_loss"])
        na, nb = float(fa["nfe"]), float(f1["nfe"])
        # Decidable per gradient evaluation only when one flow is ahead on both counts.
        if (na <= nb and la < lb) or (na >= nb and la > lb):
            adaptive = {
                "from_curves": False,
                "a": la,
                "b": lb,
                "nfe_a": na,
                "nfe_b": nb,
                "lower": la < lb,
                "tie": False,
            }
    return second, adaptive


def convergence_sections(
    studies: Sequence[Mapping[str, Any]],
    claims: Mapping[str, Any],
    *,
    confidence: float,
) -> dict[str, Any]:
    """Per dataset: the summary table, the findings and whether a figure can be drawn."""
    items = []
    for study in studies:
        s, curves = study["summary"], study["curves"]
        flows = s.get("flows", {}) or {}
        rows = [
            {
                "flow": flow_label(flow),
                "iterations": v.get("iterations"),
                "nfe": v.get("nfe"),
                "seconds": v.get("seconds"),
                "final_mean_loss": v.get("final_mean_loss"),
            }
            for flow, v in ((f, flows[f]) for f in _ordered(flows, figures.FLOWS))
        ]
        usable = curves is not None and not curves.empty
        if usable and any(c not in curves for c in figures.CONVERGENCE_COLUMNS):
            usable = False
        second, adaptive = _convergence_findings(s, curves if usable else None, confidence)
        loss = str(s.get("loss", "sse"))
        items.append(
            {
                "dataset": str(s.get("dataset", study["dataset"])),
                "label": dataset_label(str(s.get("dataset", study["dataset"]))),
                "summary": s,
                "loss": loss,
                "loss_label": loss_label(loss),
                "rows": rows,
                "has_curves": usable,
                "curves": curves if usable else None,
                "second_vs_first": second,
                "adaptive_vs_first": adaptive,
                "figure": None,
            }
        )
    return {
        "status": "run" if items else "not run",
        "items": items,
        "claims": claims_by_id(claims, GFE_CLAIMS["convergence"]),
    }


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def gradients_section(bench: Mapping[str, Any] | None, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder-gradient benchmark: its table and the approximate-vs-exact finding."""
    base: dict[str, Any] = {
        "present": bench is not None,
        "claims": claims_by_id(claims, GFE_CLAIMS["gradients"]),
    }
    if bench is None:
        return base
    results = [r for r in bench["results"] if isinstance(r, Mapping) and "mode" in r]
    by_mode = {str(r["mode"]): r for r in results}
    order = _ordered(by_mode, BENCH_MODES)
    rows = [
        {
            "mode": mode,
            **{
                key: _float_or_none(by_mode[mode].get(key))
                for key in (
                    "seconds",
                    "peak_rss_mib",
                    "rss_growth_mib",
                    "forward_nfe",
                    "cosine_vs_backprop",
                    "relative_difference_vs_backprop",
                )
            },
        }
        for mode in order
    ]
    row = {r["mode"]: r for r in rows}
    finding = None
    approx, backprop, adjoint = row.get("approximate"), row.get("backprop"), row.get("adjoint")
    if approx and approx["cosine_vs_backprop"] is not None and approx["seconds"]:

        def ratio(other: dict[str, Any] | None) -> float | None:
            if not other or other["seconds"] is None:
                return None
            return other["seconds"] / approx["seconds"]

        finding = {
            "cosine": approx["cosine_vs_backprop"],
            "relative_difference": approx["relative_difference_vs_backprop"],
            "vs_backprop": ratio(backprop),
            "vs_adjoint": ratio(adjoint),
            "adjoint_cosine": adjoint["cosine_vs_backprop"] if adjoint else None,
        }
    settings = bench.get("settings") or {}
    return base | {
        "benchmark": bench.get("benchmark"),
        "device": bench.get("device"),
        "machine": bench.get("machine"),
        "torch": bench.get("torch"),
        "settings": [(str(k), v) for k, v in settings.items()],
        "rows": rows,
        "finding": finding,
    }


def _write_gfe_figures(
    fig_dir: Path,
    finals: pd.DataFrame,
    curves: pd.DataFrame,
    efficiency: dict[str, Any],
    convergence: dict[str, Any],
    *,
    methods: Sequence[str],
    confidence: float,
) -> None:
    """Draw the GFE study figures the inputs allow, recording their paths in the sections."""
    efficiency["figure_final"] = efficiency["figure_curves"] = None
    loss = efficiency["loss"]
    if not finals.empty:
        fig_dir.mkdir(parents=True, exist_ok=True)
        figures.plot_efficiency_final(
            finals,
            fig_dir / "efficiency_final.png",
            loss=loss,
            methods=methods,
            confidence=confidence,
        )
        efficiency["figure_final"] = "figures/efficiency_final.png"
    if not curves.empty:
        fig_dir.mkdir(parents=True, exist_ok=True)
        figures.plot_efficiency_curves(
            curves,
            fig_dir / "efficiency_curves.png",
            loss=loss,
            methods=methods,
            confidence=confidence,
        )
        efficiency["figure_curves"] = "figures/efficiency_curves.png"
    items = convergence["items"]
    for item in items:
        if not item["has_curves"]:
            continue
        name = "convergence.png" if len(items) == 1 else f"convergence_{item['dataset']}.png"
        fig_dir.mkdir(parents=True, exist_ok=True)
        figures.plot_convergence(
            item["curves"], fig_dir / name, loss=item["loss"], confidence=confidence
        )
        item["figure"] = f"figures/{name}"


# --------------------------------------------------------------------------------------------
# Figures and rendering
# --------------------------------------------------------------------------------------------


def _write_figures(
    out_dir: Path,
    runs: Sequence[Run],
    results: pd.DataFrame,
    refs: pd.DataFrame,
    *,
    methods: Sequence[str],
    confidence: float,
) -> dict[str, Any]:
    """Draw what the inputs allow; a figure with no data is left out and the report says so."""
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"curves": None, "curves_time": None, "test": None, "recon": []}
    hist = histories_long(runs)
    if not hist.empty:
        figures.plot_training_curves(
            hist, fig_dir / "training_curves.png", methods=methods, confidence=confidence
        )
        out["curves"] = "figures/training_curves.png"
        if hist["wall_seconds"].notna().all():
            figures.plot_training_curves(
                hist,
                fig_dir / "training_curves_time.png",
                x="wall_seconds",
                methods=methods,
                confidence=confidence,
            )
            out["curves_time"] = "figures/training_curves_time.png"
    if not results.empty and (results["split"] == "test").any():
        ref_plot = refs[["dataset", "name", "nz", "sse_per_image"]]
        figures.plot_test_losses(
            results,
            fig_dir / "test_losses.png",
            references=ref_plot,
            methods=methods,
            confidence=confidence,
        )
        out["test"] = "figures/test_losses.png"
    out["recon"] = _copy_recon_grids(fig_dir, runs)
    return out


def _copy_recon_grids(fig_dir: Path, runs: Sequence[Run]) -> list[dict[str, Any]]:
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
            {
                "dataset": dataset_label(dataset),
                "method": method_label(method),
                "nz": nz,
                "seed": r.seed,
                "path": f"figures/{name}",
                "run": r.name,
            }
        )
    return out


def _fmt_num(value: Any, sig: int = 4) -> str:
    """Significant-figure formatting; NaN/None as 'n/a' so a gap is visible, not a fake 0."""
    if value is None:
        return "n/a"
    x = float(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞"
    return f"{x:.{sig}g}"


def _fmt_qty(value: Any, sig: int = 4) -> str:
    """Like :func:`_fmt_num`, but whole numbers of 10,000 or more in full (74,321 parameters)."""
    if value is not None and math.isfinite(x := float(value)) and abs(x) >= 1e4 and x.is_integer():
        return f"{x:,.0f}"
    return _fmt_num(value, sig)


def _fmt_ci(ci: MeanCI | None, sig: int = 4) -> str:
    """'mean [low, high]'; with one seed, the mean and a note instead of a zero-width interval."""
    if ci is None:
        return "n/a"
    if math.isnan(ci.low) or math.isnan(ci.high):
        return f"{_fmt_num(ci.mean, sig)} [no CI: n = {ci.n}]"
    return f"{_fmt_num(ci.mean, sig)} [{_fmt_num(ci.low, sig)}, {_fmt_num(ci.high, sig)}]"


def _fmt_int(value: Any) -> str:
    return f"{int(value):,}"


def _fmt_count(value: Any) -> str:
    """A count or a mean of counts, with thousands separators ('n/a' when absent)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    x = float(value)
    return f"{x:,.0f}" if x == round(x) or abs(x) >= 100 else f"{x:,.1f}"


def _fmt_seconds(value: Any) -> str:
    if value is None:
        return "n/a"
    s = float(value)
    return f"{s:,.1f} s ({s / 3600:.2f} h)" if s >= 3600 else f"{s:,.1f} s"


def _fmt_duration(value: Any) -> str:
    """Seconds for the GFE tables: 3 significant figures below 10 s (an AE encode takes
    milliseconds, which one decimal would print as 0.0 s), else as :func:`_fmt_seconds`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    s = float(value)
    return f"{s:.3g} s" if abs(s) < 10 else _fmt_seconds(s)


def _environment() -> jinja2.Environment:
    """Strict Jinja: an undefined name is an error, not a silently empty cell."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML  # noqa: S701
    )
    env.filters.update(
        num=_fmt_num,
        qty=_fmt_qty,
        ci=_fmt_ci,
        int=_fmt_int,
        count=_fmt_count,
        seconds=_fmt_seconds,
        duration=_fmt_duration,
        pct=lambda x: f"{x:.0%}",
    )
    return env


def render_markdown(context: Mapping[str, Any]) -> str:
    """Render the report template with ``context`` (exposed for tests and other front ends)."""
    return _environment().get_template(TEMPLATE_NAME).render(**context)


def _write_results_csv(path: Path, results: pd.DataFrame, efficiency: pd.DataFrame) -> None:
    """GON/AE rows, then the efficiency rows; the efficiency columns stay empty for the former."""
    columns = [*RESULTS_COLUMNS, *EFFICIENCY_COLUMNS]
    parts = [f.reindex(columns=columns) for f in (results, efficiency) if not f.empty]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    table["train_size"] = table["train_size"].astype("Int64")
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())


def build_report(
    runs_dir: Path, data_dir: Path, out_dir: Path, *, params: dict, provenance: dict
) -> Path:
    """Read all inputs, write results.csv, the figures and report.md; return report.md's path."""
    runs_dir, data_dir, out_dir = Path(runs_dir), Path(data_dir), Path(out_dir)
    claims = load_claims()
    train, evaluate, data = (
        params.get("train", {}),
        params.get("evaluate", {}),
        params.get("data", {}),
    )
    confidence = float(params.get("report", {}).get("confidence", 0.95))
    headline_bn = str(evaluate.get("headline_bn", "batch"))
    methods = list(train.get("methods", []))

    runs, warnings = load_runs(runs_dir)
    warnings += _consistency_warnings(runs, params, headline_bn)
    listed = list(data.get("datasets", []))
    datasets = _ordered([*listed, *(r.dataset for r in runs)], listed)
    methods = _ordered([*methods, *(r.method for r in runs)], methods)

    # Sort once so every table, figure and list follows the params' dataset and method order.
    d_order = {d: i for i, d in enumerate(datasets)}
    m_order = {m: i for i, m in enumerate(methods)}
    runs.sort(key=lambda r: (d_order[r.dataset], m_order[r.method], r.nz, r.seed))
    results = summarise(
        runs, confidence=confidence, headline_bn=headline_bn, methods=methods, datasets=datasets
    )
    references = {d: load_reference(runs_dir, d) for d in datasets}
    refs = references_frame(references)
    manifests = {d: load_manifest(data_dir, d) for d in datasets}

    # Gradient Flow Encoding studies: each one optional, a missing one is "not run".
    eff_params = params.get("efficiency", {}) or {}
    eff_runs, eff_warnings = load_efficiency_runs(runs_dir / "efficiency")
    eff_loss = _study_loss(eff_runs, eff_params)
    warnings += eff_warnings + _efficiency_warnings(eff_runs, eff_params, params, eff_loss)
    eff_methods = _ordered(
        [*eff_params.get("methods", []), *(r.method for r in eff_runs)],
        list(eff_params.get("methods", [])),
    )
    eff_runs.sort(key=lambda r: (r.dataset, eff_methods.index(r.method), r.train_size, r.seed))
    finals, eff_curves = efficiency_frames(eff_runs, eff_loss)
    efficiency = efficiency_section(
        eff_runs,
        finals,
        params,
        claims,
        loss=eff_loss,
        methods=eff_methods,
        confidence=confidence,
    )
    convergence = convergence_sections(
        load_convergence(runs_dir / "convergence"), claims, confidence=confidence
    )
    bench, bench_warnings = load_benchmark(out_dir)
    warnings += bench_warnings
    gradients = gradients_section(bench, claims)
    eff_nz = {r.method: r.metrics.get("nz") for r in eff_runs}

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_results_csv(
        out_dir / "results.csv",
        results,
        efficiency_results(finals, eff_loss, confidence=confidence, nz=eff_nz),
    )
    figs = _write_figures(out_dir, runs, results, refs, methods=methods, confidence=confidence)
    _write_gfe_figures(
        out_dir / "figures",
        finals,
        eff_curves,
        efficiency,
        convergence,
        methods=eff_methods,
        confidence=confidence,
    )
    for item in convergence["items"]:
        item.pop("curves")  # the template needs the summary, not the raw rows

    sections = dataset_sections(
        datasets, runs, results, refs, methods=methods, headline_bn=headline_bn
    )
    datasets_run = {r.dataset for r in runs}
    # Ablation studies and main-run controls (repro/report/studies.py): studies.csv, figures.
    study_sections, study_warnings = studies_context(
        runs_dir,
        out_dir,
        main_runs=runs,
        eff_runs=eff_runs,
        params=params,
        claims=claims,
        confidence=confidence,
        headline_bn=headline_bn,
        datasets_run=datasets_run,
    )
    warnings += study_warnings
    speed, speed_warnings = speed_section(out_dir, out_dir / "figures")
    warnings += speed_warnings
    # Claims: each one's rule applied to the same evidence (repro/report/claims.py).
    registry = load_registry()
    verdicts = evaluate_claims(registry, collect_evidence(runs_dir, out_dir, params))
    write_claims_csv(out_dir / "claims.csv", verdicts)
    gpu = gpu_section(runs_dir, registry=registry, verdicts=verdicts, fig_dir=out_dir / "figures")
    bn_modes = _bn_modes(runs) or [headline_bn]  # columns stay even with no runs
    pub = _protocol_values(claims)
    size = data.get("image_size")
    context = {
        "params": params,
        "profile": params.get("profile"),
        "reduced": params.get("profile") != "paper",
        "published_protocol": pub,
        "confidence": confidence,
        "headline_bn": headline_bn,
        "headline_bn_label": bn_label(headline_bn),
        "bn_modes": bn_modes,
        "bn_labels": {m: bn_label(m) for m in bn_modes},
        "image_size": size,
        "n_pixels": size * size if size else None,
        "datasets": sections,
        "datasets_run": [dataset_label(d) for d in datasets if d in datasets_run],
        "datasets_not_run": [dataset_label(d) for d in datasets if d not in datasets_run],
        "methods": [method_label(m) for m in methods],
        "n_runs": len(runs),
        "published": published_section(
            claims,
            results,
            datasets_run=datasets_run,
            datasets_listed=set(listed),
            bn_modes=bn_modes,
        ),
        "parameters": parameters_section(runs, claims, methods),
        "figures": figs,
        "differences": protocol_differences(
            params,
            claims,
            resize_methods=[v for m in manifests.values() if m for _, v in _resize_entries(m)],
        ),
        "provenance": provenance_section(
            runs,
            manifests,
            provenance,
            compute=_compute_seconds(
                runs, eff_runs, load_studies(runs_dir / "studies")[0], convergence, bench
            ),
        ),
        "speed": speed,
        "gpu": gpu,
        "summary": narrative.executive_summary(verdicts, registry["sources"]),
        "claims_table": narrative.claims_table(verdicts, registry["sources"]),
        "sources": [{"key": k, **v} for k, v in registry["sources"].items()],
        "limitations": narrative.limitations(
            params,
            verdicts,
            datasets_run=datasets_run,
            published_epochs=pub.get("table1_epochs"),
            published_train_images=pub.get("train_images") or 0,
        ),
        "efficiency": efficiency,
        "convergence": convergence,
        "gradients": gradients,
        "studies": study_sections,
        "efficiency_runs": [
            {
                "name": r.name,
                "train_seconds": r.final("train_seconds"),
                "wall_seconds": r.metrics.get("wall_seconds"),
                "mlflow_run_id": r.metrics.get("mlflow_run_id"),
            }
            for r in eff_runs
        ],
        "warnings": warnings,
    }
    path = out_dir / "report.md"
    with atomic_write(path, "w") as fh:
        fh.write(render_markdown(context))
    write_html(path, out_dir / "report.html")
    return path
