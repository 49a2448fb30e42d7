"""Every input of the report, read once (:func:`load_inputs`) into :class:`ReportInputs`: the
main runs in report order, the reference losses and data manifests, the GFE studies, the
ablations, the variational and implicit studies, and the evidence the claim rules read (the same
records). A part the pipeline did not write is empty and its section says "not run".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from repro.config import Params
from repro.records import DiagnosisMetrics
from repro.report.claims.evidence import Evidence
from repro.report.formatting import ordered
from repro.report.loaders import (
    ConvergenceStudy,
    DataManifest,
    EfficiencyRun,
    GradientBenchmark,
    Run,
    load_benchmark,
    load_claims,
    load_convergence,
    load_diagnosis,
    load_efficiency_runs,
    load_encoding,
    load_implicit,
    load_manifest,
    load_reference,
    load_runs,
    load_variational,
)
from repro.report.sections.efficiency import efficiency_warnings, study_loss
from repro.report.sections.provenance import consistency_warnings
from repro.report.sections.results import references_frame
from repro.report.study_runs import StudyRun, load_studies


@dataclass
class ReportInputs:
    """Everything the report reads, loaded once; the sections and the claim rules share it."""

    params: Params
    claims: dict[str, Any]  # claims.yaml: published numbers, sources, published protocol
    confidence: float
    headline_bn: str
    listed: list[str]  # the datasets params lists
    datasets: list[str]  # those, then any other found on disk
    methods: list[str]  # params' methods, then any other found on disk
    runs: list[Run]  # main runs in report order: dataset, method, nz, seed
    references: pd.DataFrame  # reference losses per dataset (references_frame)
    manifests: dict[str, DataManifest | None]
    eff_runs: list[EfficiencyRun]  # report order: dataset, method, train size, seed
    eff_methods: list[str]
    eff_loss: str  # the data-efficiency study's loss
    diagnosis: DiagnosisMetrics | None  # stage diagnose, when it was run
    transfer_runs: list[EfficiencyRun]  # stage transfer: unseen-class runs
    evidence: Evidence  # what the claim rules read: the same runs, in the loaders' order
    warnings: list[str]  # the loaders' and consistency checks' warnings, in report order

    @property
    def study_runs(self) -> list[StudyRun]:
        return self.evidence.studies

    @property
    def convergence(self) -> list[ConvergenceStudy]:
        """The GFE convergence study of each dataset."""
        return self.evidence.convergence

    @property
    def bench(self) -> GradientBenchmark | None:
        """The decoder-gradient benchmark, when it was run."""
        return self.evidence.bench


def load_inputs(runs_dir: Path, data_dir: Path, out_dir: Path, params: Params) -> ReportInputs:
    """Read every input of the report once (a missing part is empty, its section "not run")."""
    headline_bn = params.evaluate.headline_bn
    runs, warnings = load_runs(runs_dir)
    main_loaded = list(runs)
    warnings += consistency_warnings(runs, params.profile, headline_bn)
    listed = list(params.data.datasets)
    datasets = ordered([*listed, *(r.dataset for r in runs)], listed)
    methods = ordered([*params.train.methods, *(r.method for r in runs)], params.train.methods)
    # Sort once so every table, figure and list follows the params' dataset and method order.
    d_order = {d: i for i, d in enumerate(datasets)}
    m_order = {m: i for i, m in enumerate(methods)}
    runs.sort(key=lambda r: (d_order[r.dataset], m_order[r.method], r.nz, r.seed))

    # Gradient Flow Encoding studies: each one optional, a missing one is "not run".
    eff = params.efficiency
    eff_runs, eff_warnings = load_efficiency_runs(runs_dir / "efficiency")
    eff_loaded = list(eff_runs)
    eff_loss = study_loss(eff_runs, eff)
    warnings += eff_warnings + efficiency_warnings(eff_runs, eff, params.profile, eff_loss)
    eff_methods = ordered([*eff.methods, *(r.method for r in eff_runs)], eff.methods)
    eff_runs.sort(key=lambda r: (r.dataset, eff_methods.index(r.method), r.train_size, r.seed))
    bench, bench_warnings = load_benchmark(out_dir)
    warnings += bench_warnings
    study_runs = load_studies(runs_dir / "studies")[0]
    convergence = load_convergence(runs_dir / "convergence")
    # The claim rules read what repro.report.claims.evidence.collect_evidence would load, in its order.
    evidence = Evidence(
        params=params,
        main=main_loaded,
        studies=study_runs,
        efficiency=eff_loaded,
        convergence=convergence,
        bench=bench,
        encoding=load_encoding(runs_dir, eff.dataset),
        variational=load_variational(runs_dir),
        implicit=load_implicit(runs_dir),
        root=runs_dir.parent,
    )
    return ReportInputs(
        params=params,
        claims=load_claims(),
        confidence=params.report.confidence,
        headline_bn=headline_bn,
        listed=listed,
        datasets=datasets,
        methods=methods,
        runs=runs,
        references=references_frame({d: load_reference(runs_dir, d) for d in datasets}),
        manifests={d: load_manifest(data_dir, d) for d in datasets},
        eff_runs=eff_runs,
        eff_methods=eff_methods,
        eff_loss=eff_loss,
        diagnosis=load_diagnosis(runs_dir, eff.dataset),
        transfer_runs=load_efficiency_runs(runs_dir / "transfer")[0],
        evidence=evidence,
        warnings=warnings,
    )
