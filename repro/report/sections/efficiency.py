"""The Gradient Flow Encoding data-efficiency section (docs/protocol.md §4).

Final held-out loss per method × training-set size × seed (runs/efficiency/), summarised over
seeds into a table, findings (lowest loss, each GFE encoder vs the AE) and the study's setting
in words; also the study's rows of results.csv.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from repro.config import EfficiencyConfig, GFEConfig, Params
from repro.names import GFE_METHODS
from repro.report.claims.registry import claims_by_id
from repro.report.figures import common as figures
from repro.report.formatting import fmt_list, ordered
from repro.report.labels import dataset_label, loss_label, method_label
from repro.report.loaders import EfficiencyRun
from repro.report.sections.results import (
    EFFICIENCY_COLUMNS,
    RESULTS_COLUMNS,
    Comparison,
    compare_methods,
)
from repro.stats import MeanCI, mean_ci, mean_or_none

# Settings every efficiency run records; a run that disagrees with params is flagged.
EFFICIENCY_SETTINGS = ("architecture", "nz", "steps", "batch_size", "eval_images", "loss")
# The published claim shown next to this section (id in claims.yaml).
EFFICIENCY_CLAIMS = ("gfe-data-efficiency",)


def study_loss(runs: Sequence[EfficiencyRun], eff: EfficiencyConfig) -> str:
    """The study loss: the one the runs' metrics name when they agree, else the params' one."""
    named = {str(r.metrics["loss"]) for r in runs if r.metrics.get("loss")}
    if len(named) == 1:
        return next(iter(named))
    return eff.loss


def efficiency_warnings(
    runs: Sequence[EfficiencyRun], eff: EfficiencyConfig, profile: str, loss: str
) -> list[str]:
    """Runs made under other settings than the params' would silently mix protocols."""
    out = []
    for key in EFFICIENCY_SETTINGS:
        want = getattr(eff, key)
        other = sorted(
            r.name for r in runs if r.metrics.get(key) is not None and r.metrics[key] != want
        )
        if other:
            out.append(
                f"efficiency runs with {key} other than {want!r} (params): {', '.join(other)}"
            )
    other = sorted(r.name for r in runs if r.metrics.get("profile") not in (None, profile))
    if other:
        out.append(f"efficiency runs from a profile other than `{profile}`: {', '.join(other)}")
    unscored = sorted(r.name for r in runs if r.final(f"test_{loss}") is None)
    if unscored:
        out.append(f"efficiency runs without a final test_{loss}: {', '.join(unscored)}: left out")
    return out


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
                "train_seconds_mean": mean_or_none(_finite(group["train_seconds"])),
                "train_nfe_mean": mean_or_none(_finite(group["train_nfe"])),
            }
        )
    return pd.DataFrame(rows, columns=[*RESULTS_COLUMNS, *EFFICIENCY_COLUMNS])


def _efficiency_setting(
    eff: EfficiencyConfig, gfe: GFEConfig, runs: Sequence[EfficiencyRun], loss: str
) -> tuple[str, str | None]:
    """(study setting, GFE encoder setting) sentences from params; the encoder's only when a
    GFE method ran."""
    setting = (
        f"{dataset_label(eff.dataset)}, "
        f"{eff.architecture.upper()} decoder, nz {eff.nz}; {eff.steps} optimiser steps × "
        f"batch {eff.batch_size} ({eff.steps * eff.batch_size:,} training images seen per run), "
        "each batch drawn from only the first n training images "
        f"(n = {fmt_list(f'{s:,}' for s in eff.train_sizes)}); RMSprop, learning rate {eff.lr}; "
        f"training and test loss {loss_label(loss)}; {eff.eval_images} held-out test images "
        f"scored at {eff.eval_points} points during training plus step 0; "
        f"seeds {fmt_list(eff.seeds)}."
    )
    methods = {r.method for r in runs}
    if not methods & {"gfe", "gfe2", "gfe_adaptive"}:
        return setting, None
    adaptive = gfe.adaptive
    parts = [
        f"GFE encoders: z(0) = 0, flow dz/dt = −α∇_z ℓ with α = {gfe.alpha} and ℓ the "
        f"study loss, integrated to τ = {gfe.tau}"
    ]
    if methods & {"gfe", "gfe2"}:
        parts.append(
            f"the 1st- and 2nd-order flows use the `{gfe.solver}` solver "
            f"(rtol {gfe.rtol}, atol {gfe.atol})"
        )
    if "gfe_adaptive" in methods:
        parts.append(
            f"the adaptive step starts at h = {adaptive.h0} with h_max = "
            f"{adaptive.h_max} and σ = {adaptive.sigma}"
        )
    parts.append(
        f"at most {gfe.max_nfe} gradient evaluations per encode; decoder gradient mode "
        f"`{gfe.grad_mode}`."
    )
    encoder = "; ".join(parts)
    return setting, encoder


@dataclass(frozen=True)
class EfficiencyRow:
    """One method × training-set size over seeds: final test loss (study unit, SSE per image)
    and mean costs (None where no run recorded them)."""

    train_size: int
    method_id: str
    method: str
    n: int
    loss: MeanCI
    sse: MeanCI | None
    train_seconds: float | None
    train_nfe: float | None
    encode_seconds: float | None
    encode_nfe: float | None


@dataclass(frozen=True)
class VersusAE:
    """A GFE encoder against the AE at one training-set size: time ratio and final loss."""

    method: str
    time_ratio: float | None
    seconds: float | None
    ae_seconds: float | None
    loss: MeanCI
    ae_loss: MeanCI
    lower: bool
    tie: bool
    overlap: bool | None


@dataclass(frozen=True)
class EfficiencyFinding:
    train_size: int
    lowest: Comparison | None  # lowest mean final loss vs the runner-up
    vs_ae: tuple[VersusAE, ...]


@dataclass(frozen=True)
class EfficiencySection:
    """The data-efficiency section; the figure paths are set once drawn."""

    status: str  # "run" or "not run"
    claims: list[dict[str, Any]]
    loss: str
    loss_label: str
    show_sse: bool
    rows: tuple[EfficiencyRow, ...] = ()
    findings: tuple[EfficiencyFinding, ...] = ()
    missing: tuple[str, ...] = ()
    n_runs: int = 0
    setting: str | None = None
    gfe_setting: str | None = None
    datasets: tuple[str, ...] = ()
    eval_images: int = 0
    figure_final: str | None = None
    figure_curves: str | None = None


def _versus_ae(row: EfficiencyRow, ae: EfficiencyRow) -> VersusAE:
    t_gfe, t_ae = row.train_seconds, ae.train_seconds
    time_ratio = None
    if t_gfe is not None and t_ae is not None:
        time_ratio = t_gfe / t_ae if t_ae > 0 else math.inf
    return VersusAE(
        method=method_label(row.method_id),
        time_ratio=time_ratio,
        seconds=t_gfe,
        ae_seconds=t_ae,
        loss=row.loss,
        ae_loss=ae.loss,
        lower=row.loss.mean < ae.loss.mean,
        tie=row.loss.mean == ae.loss.mean,
        overlap=row.loss.overlaps(ae.loss),
    )


def _efficiency_findings(
    rows: Sequence[EfficiencyRow], sizes: Sequence[int]
) -> tuple[EfficiencyFinding, ...]:
    """Per train size: lowest mean final test loss vs the runner-up, and each GFE vs the AE."""
    out = []
    for size in sizes:
        mine = {r.method_id: r for r in rows if r.train_size == size}
        comparison = compare_methods({m: r.loss for m, r in mine.items()}, size)
        ae = mine.get("ae")
        vs_ae = tuple(
            _versus_ae(r, ae) for m, r in mine.items() if m in GFE_METHODS and ae is not None
        )
        if comparison is not None or vs_ae:
            out.append(EfficiencyFinding(size, comparison, vs_ae))
    return tuple(out)


def _rows(
    finals: pd.DataFrame, sizes: Sequence[int], methods: Sequence[str], confidence: float
) -> list[EfficiencyRow]:
    rows = []
    for size in sizes:
        for method in ordered(finals["method"], methods):
            g = finals[(finals["train_size"] == size) & (finals["method"] == method)]
            if g.empty:
                continue
            sse = _finite(g["final_sse"])
            rows.append(
                EfficiencyRow(
                    train_size=size,
                    method_id=method,
                    method=method_label(method),
                    n=len(g),
                    loss=mean_ci(g["final_loss"], confidence),
                    sse=mean_ci(sse, confidence) if sse else None,
                    **{
                        col: mean_or_none(_finite(g[col]))
                        for col in ("train_seconds", "train_nfe", "encode_seconds", "encode_nfe")
                    },
                )
            )
    return rows


def efficiency_section(
    runs: Sequence[EfficiencyRun],
    finals: pd.DataFrame,
    params: Params,
    claims: Mapping[str, Any],
    *,
    loss: str,
    methods: Sequence[str],
    confidence: float,
) -> EfficiencySection:
    """Table, findings and settings of the data-efficiency study (status "not run" without runs)."""
    eff = params.efficiency
    base = EfficiencySection(
        status="run" if not finals.empty else "not run",
        claims=claims_by_id(claims, EFFICIENCY_CLAIMS),
        loss=loss,
        loss_label=loss_label(loss),
        show_sse=loss != "sse",
    )
    if finals.empty:
        return base
    sizes = sorted(int(s) for s in finals["train_size"].unique())
    rows = _rows(finals, sizes, methods, confidence)
    found = {(r.method, r.train_size, r.seed) for r in runs}
    expected = [
        (m, int(n), int(s)) for m in eff.methods for n in eff.train_sizes for s in eff.seeds
    ]
    setting, gfe_setting = _efficiency_setting(eff, params.gfe, runs, loss)
    return replace(
        base,
        rows=tuple(rows),
        findings=_efficiency_findings(rows, sizes),
        missing=tuple(f"{m}-n{n}-s{s}" for m, n, s in expected if (m, n, s) not in found),
        n_runs=len(finals),
        setting=setting,
        gfe_setting=gfe_setting,
        datasets=tuple(dataset_label(d) for d in dict.fromkeys(finals["dataset"])),
        eval_images=eff.eval_images,
    )
