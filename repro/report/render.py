"""Build the Markdown report from the runs directory.

Nothing here knows a result: every number in the report is read from the runs' ``metrics.json``
and ``history.csv``, the reference losses, the data manifests, the params and ``claims.yaml``
(the published numbers). The document itself is a Jinja2 template; this module takes the
inputs, read once (:mod:`repro.report.inputs`), hands them to one module per report section and
renders the result:

    sections.results      results.csv: the main runs summarised over seeds
    sections.datasets     per dataset: headline table, references, BatchNorm modes, spread
    sections.published    Table 1 and the Julia reproduction; parameter counts
    sections.protocol     how this run's protocol departs from the published one
    sections.provenance   compute, data manifests, per-run records; consistency warnings
    sections.efficiency   GFE data efficiency (and its results.csv rows)
    sections.convergence  GFE convergence
    sections.gradients    GFE decoder-gradient benchmark
    sections.diagnosis    why GON with the MLP decoder stays at the mean image
    sections.encoding     encoding optimality (amortisation gap), GFE's start, encode cost
    sections.transfer     generalisation to unseen classes (digits 0–4 → 5–9)
    sections.variational  the variational GON against a VAE (bounds, samples)
    sections.implicit     the implicit GON (SIREN) against an implicit AE; super-resolution
    sections.figures      the figures of the main runs and the GFE studies
    sections.studies      the ablation studies (studies/) and the main-run controls (controls/)
    sections.speed, .gpu, .narrative: step times, the GPU session, the executive summary
    claims.evaluate       the claim verdicts (claims.csv)
    formatting            number filters, the Jinja environment, render_markdown

Layout read (written by the pipeline)::

    runs/main/<dataset>-nz<nz>/<method>-s<seed>/{metrics.json, history.csv, recon.png}
    runs/<dataset>/reference.json
    data/<dataset>.manifest.json
    runs/efficiency/<dataset>/<method>-n<train_size>-s<seed>/{metrics.json, curve.csv}
    runs/convergence/<dataset>/{summary.json, curves.csv}      (curves.csv may be absent)
    out_dir/bench_gfe_gradients.json                            (optional benchmark)
    runs/diagnosis/<dataset>/gon_mlp.json                       (optional: stage diagnose)
    runs/encoding/<dataset>/summary.json                        (optional: stage encoding)
    runs/transfer/<dataset>/<method>-s<seed>/{metrics.json, curve.csv}  (optional: transfer)
    runs/studies/<study>/<cell>/{metrics.json, curves.csv}      (ablation studies)
    runs/variational/<dataset>/<method>-s<seed>/                (optional: variational)
    runs/implicit/<dataset>/<run>/                              (optional: implicit)

Layout written::

    out_dir/report.md, out_dir/report.html, out_dir/results.csv, out_dir/claims.csv,
    out_dir/figures/*.png, out_dir/plots/*.csv (the data of `dvc plots show`: repro.report.dvc_plots)
    out_dir/studies.csv, out_dir/figures/study_*.png     (ablation studies: repro.report.sections.studies)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro.config import Params
from repro.io import atomic_write
from repro.report.claims.evaluate import ClaimResult, evaluate_claims, write_claims_csv
from repro.report.claims.registry import load_registry
from repro.report.dvc_plots import write_plot_data
from repro.report.formatting import render_markdown
from repro.report.html import write_html
from repro.report.inputs import ReportInputs, load_inputs
from repro.report.labels import bn_label, dataset_label, method_label
from repro.report.sections import narrative
from repro.report.sections.convergence import convergence_sections
from repro.report.sections.datasets import dataset_sections
from repro.report.sections.diagnosis import diagnosis_section
from repro.report.sections.efficiency import (
    EfficiencySection,
    efficiency_frames,
    efficiency_results,
    efficiency_section,
)
from repro.report.sections.encoding import encoding_section
from repro.report.sections.figures import MainFigures, write_figures, write_gfe_figures
from repro.report.sections.gpu import gpu_section
from repro.report.sections.gradients import gradients_section
from repro.report.sections.implicit import implicit_section
from repro.report.sections.protocol import protocol_differences, protocol_values
from repro.report.sections.provenance import (
    ProvenanceSection,
    compute_seconds,
    provenance_section,
)
from repro.report.sections.published import parameters_section, published_section
from repro.report.sections.results import (
    bn_modes_of,
    summarise,
    write_results_csv,
)
from repro.report.sections.speed import speed_section
from repro.report.sections.studies import studies_context
from repro.report.sections.transfer import transfer_section
from repro.report.sections.variational import variational_section

__all__ = ["build_report"]


def build_report(
    runs_dir: Path, data_dir: Path, out_dir: Path, *, params: Params, provenance: dict
) -> Path:
    """Read all inputs, write results.csv, the figures and report.md; return report.md's path."""
    runs_dir, data_dir, out_dir = Path(runs_dir), Path(data_dir), Path(out_dir)
    inputs = load_inputs(runs_dir, data_dir, out_dir, params)
    claims, confidence, runs = inputs.claims, inputs.confidence, inputs.runs
    results = summarise(
        runs,
        confidence=confidence,
        headline_bn=inputs.headline_bn,
        methods=inputs.methods,
        datasets=inputs.datasets,
    )
    efficiency, eff_results, finals, eff_curves = _efficiency(inputs)
    convergence = convergence_sections(inputs.convergence, claims, confidence=confidence)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_results_csv(out_dir / "results.csv", results, eff_results)
    write_plot_data(runs, inputs.eff_runs, out_dir / "plots")
    figs = write_figures(
        out_dir, runs, results, inputs.references, methods=inputs.methods, confidence=confidence
    )
    efficiency, convergence = write_gfe_figures(
        out_dir / "figures",
        finals,
        eff_curves,
        efficiency,
        convergence,
        methods=inputs.eff_methods,
        confidence=confidence,
    )
    # Ablation studies and main-run controls (repro.report.sections.studies): studies.csv, figures.
    studies, study_warnings = studies_context(
        runs_dir,
        out_dir,
        main_runs=runs,
        eff_runs=inputs.eff_runs,
        params=params,
        claims=claims,
        confidence=confidence,
        headline_bn=inputs.headline_bn,
        datasets_run={r.dataset for r in runs},
    )
    speed, speed_warnings = speed_section(out_dir, out_dir / "figures")
    # Claims: each one's rule applied to the same evidence (repro/report/claims/evaluate.py).
    registry = load_registry()
    verdicts = evaluate_claims(registry, inputs.evidence)
    write_claims_csv(out_dir / "claims.csv", verdicts)
    gpu = gpu_section(runs_dir, registry=registry, verdicts=verdicts, fig_dir=out_dir / "figures")
    context = {
        **_main_context(inputs, results, figs),
        "provenance": _provenance(inputs, provenance),
        "speed": speed,
        "gpu": gpu,
        **_claims_context(inputs, registry, verdicts),
        "efficiency": efficiency,
        "convergence": convergence,
        **_optional_sections(inputs, out_dir / "figures"),
        "studies": studies,
        "warnings": [*inputs.warnings, *study_warnings, *speed_warnings],
    }
    path = out_dir / "report.md"
    with atomic_write(path, "w") as fh:
        fh.write(render_markdown(context))
    write_html(path, out_dir / "report.html")
    return path


def _optional_sections(inputs: ReportInputs, fig_dir: Path) -> dict[str, Any]:
    """The optional studies' sections: the GFE decoder-gradient benchmark, the diagnosis, the
    encoding and transfer studies, the variational and the implicit GON (whose sample grids
    are copied into ``fig_dir``)."""
    confidence, evidence = inputs.confidence, inputs.evidence
    return {
        "gradients": gradients_section(inputs.bench, inputs.claims),
        "diagnosis": diagnosis_section(
            inputs.diagnosis, inputs.runs, confidence=confidence, headline_bn=inputs.headline_bn
        ),
        "encoding": encoding_section(evidence.encoding, confidence=confidence),
        "transfer": transfer_section(
            inputs.transfer_runs, inputs.eff_methods, confidence=confidence
        ),
        "variational": variational_section(
            evidence.variational, confidence=confidence, fig_dir=fig_dir
        ),
        "implicit": implicit_section(evidence.implicit, confidence=confidence, fig_dir=fig_dir),
    }


def _efficiency(
    inputs: ReportInputs,
) -> tuple[EfficiencySection, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(section, results.csv rows, finals, curves) of the data-efficiency study; the frames are
    what its figures draw."""
    finals, curves = efficiency_frames(inputs.eff_runs, inputs.eff_loss)
    section = efficiency_section(
        inputs.eff_runs,
        finals,
        inputs.params,
        inputs.claims,
        loss=inputs.eff_loss,
        methods=inputs.eff_methods,
        confidence=inputs.confidence,
    )
    nz = {r.method: r.metrics.get("nz") for r in inputs.eff_runs}
    rows = efficiency_results(finals, inputs.eff_loss, confidence=inputs.confidence, nz=nz)
    return section, rows, finals, curves


def _main_context(inputs: ReportInputs, results: pd.DataFrame, figs: MainFigures) -> dict[str, Any]:
    """The template's settings and the main-run sections: datasets, published numbers,
    parameters, figures and protocol differences."""
    params, claims, runs = inputs.params, inputs.claims, inputs.runs
    headline_bn, datasets = inputs.headline_bn, inputs.datasets
    datasets_run = {r.dataset for r in runs}
    bn_modes = bn_modes_of(runs) or [headline_bn]  # columns stay even with no runs
    size = params.data.image_size
    resize_methods = [v for m in inputs.manifests.values() if m for _, v in m.resize]
    return {
        "params": params,
        "profile": params.profile,
        "reduced": params.profile != "paper",
        "published_protocol": protocol_values(claims),
        "confidence": inputs.confidence,
        "headline_bn": headline_bn,
        "headline_bn_label": bn_label(headline_bn),
        "bn_modes": bn_modes,
        "bn_labels": {m: bn_label(m) for m in bn_modes},
        "image_size": size,
        "n_pixels": size * size if size else None,
        "datasets": dataset_sections(
            datasets,
            runs,
            results,
            inputs.references,
            methods=inputs.methods,
            headline_bn=headline_bn,
        ),
        "datasets_run": [dataset_label(d) for d in datasets if d in datasets_run],
        "datasets_not_run": [dataset_label(d) for d in datasets if d not in datasets_run],
        "methods": [method_label(m) for m in inputs.methods],
        "n_runs": len(runs),
        "published": published_section(
            claims,
            results,
            datasets_run=datasets_run,
            datasets_listed=set(inputs.listed),
            bn_modes=bn_modes,
        ),
        "parameters": parameters_section(runs, claims, inputs.methods),
        "figures": figs,
        "differences": protocol_differences(params, claims, resize_methods=resize_methods),
    }


def _provenance(inputs: ReportInputs, provenance: Mapping[str, Any]) -> ProvenanceSection:
    """The provenance section, with the measured compute of every part of the study."""
    compute = compute_seconds(
        inputs.runs, inputs.eff_runs, inputs.study_runs, inputs.convergence, inputs.bench
    )
    return provenance_section(
        inputs.runs, inputs.eff_runs, inputs.manifests, provenance, compute=compute
    )


def _claims_context(
    inputs: ReportInputs, registry: Mapping[str, Any], verdicts: Sequence[ClaimResult]
) -> dict[str, Any]:
    """The executive summary, the claims table, the sources and the limitations."""
    pub = protocol_values(inputs.claims)
    sources = registry["sources"]
    return {
        "summary": narrative.executive_summary(verdicts, sources),
        "claims_table": narrative.claims_table(verdicts, sources),
        "sources": [{"key": k, **v} for k, v in sources.items()],
        "limitations": narrative.limitations(
            inputs.params,
            verdicts,
            datasets_run={r.dataset for r in inputs.runs},
            published_epochs=pub.get("table1_epochs"),
            published_train_images=pub.get("train_images") or 0,
        ),
    }
