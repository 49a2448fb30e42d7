"""The provenance section: compute per part of the study, data manifests, per-run records.

Also the consistency check of the main runs against params (a run made under another profile
or headline BatchNorm mode would silently mix protocols).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repro.report.labels import dataset_label
from repro.report.loaders import (
    ConvergenceStudy,
    DataManifest,
    EfficiencyRun,
    GradientBenchmark,
    Run,
)
from repro.report.study_runs import StudyRun


@dataclass(frozen=True)
class ComputePart:
    """The measured compute of one part of the study, in seconds."""

    part: str
    seconds: float


@dataclass(frozen=True)
class ManifestRow:
    """A dataset (its label) and its data manifest; None when no manifest was found."""

    dataset: str
    manifest: DataManifest | None

    @property
    def present(self) -> bool:
        return self.manifest is not None


@dataclass(frozen=True)
class RunRecord:
    """A main run's device, training and evaluation times and MLflow run id."""

    name: str
    device: str | None
    train_seconds: float | None
    eval_seconds: float | None
    mlflow_run_id: str | None


@dataclass(frozen=True)
class EfficiencyRunRecord:
    """A data-efficiency run's training time (evaluation excluded), whole-run wall time and
    MLflow run id."""

    name: str
    train_seconds: float | None
    wall_seconds: float | None
    mlflow_run_id: str | None


@dataclass(frozen=True)
class ProvenanceSection:
    """Compute per part, the provenance block (git commit, params hash, machine: as given),
    each dataset's manifest, and the per-run records of the main and data-efficiency runs."""

    compute: tuple[ComputePart, ...]
    entries: tuple[tuple[str, Any], ...]
    manifests: tuple[ManifestRow, ...]
    train_seconds: float  # of the main runs
    eval_seconds: float
    runs: tuple[RunRecord, ...]  # by name
    efficiency_runs: tuple[EfficiencyRunRecord, ...]  # in report order

    @property
    def compute_total(self) -> float:
        return sum(c.seconds for c in self.compute)

    @property
    def total_seconds(self) -> float:
        """The main runs' training and evaluation."""
        return self.train_seconds + self.eval_seconds


def compute_seconds(
    runs: Sequence[Run],
    eff_runs: Sequence[EfficiencyRun],
    study_runs: Sequence[StudyRun],
    convergence: Sequence[ConvergenceStudy],
    bench: GradientBenchmark | None,
) -> tuple[ComputePart, ...]:
    """Measured compute per part of the study, as each stage recorded it (start-up excluded);
    parts that recorded none are left out."""
    main = sum(
        float(r.metrics.get("train_seconds") or 0.0) + float(r.metrics.get("eval_seconds") or 0.0)
        for r in runs
    )
    eff = sum(float(r.metrics.get("wall_seconds") or 0.0) for r in eff_runs)
    study = sum(r.value("train_seconds") or 0.0 for r in study_runs)
    conv = sum(
        float(f.get("seconds") or 0.0)
        for study in convergence
        for f in (study.summary.get("flows") or {}).values()
    )
    bench_s = sum(r.seconds or 0.0 for r in bench.results) if bench else 0.0
    parts = (
        ComputePart("main GON/AE/linear-AE runs (training + evaluation)", main),
        ComputePart("ablation studies: activation, multi-step, latent size (training)", study),
        ComputePart("GFE data-efficiency runs", eff),
        ComputePart("GFE convergence study (solvers)", conv),
        ComputePart("GFE decoder-gradient benchmark", bench_s),
    )
    return tuple(p for p in parts if p.seconds > 0)


def provenance_section(
    runs: Sequence[Run],
    eff_runs: Sequence[EfficiencyRun],
    manifests: Mapping[str, DataManifest | None],
    provenance: Mapping[str, Any],
    *,
    compute: Sequence[ComputePart] = (),
) -> ProvenanceSection:
    """Compute per part (:func:`compute_seconds`), the provenance block, each dataset's
    manifest (hashes, resize) and each main and data-efficiency run's record."""
    return ProvenanceSection(
        compute=tuple(compute),
        entries=tuple(provenance.items()),
        manifests=tuple(ManifestRow(dataset_label(d), m) for d, m in manifests.items()),
        train_seconds=sum(float(r.metrics.get("train_seconds") or 0.0) for r in runs),
        eval_seconds=sum(float(r.metrics.get("eval_seconds") or 0.0) for r in runs),
        runs=tuple(
            RunRecord(
                name=r.name,
                device=r.metrics.get("device"),
                train_seconds=r.metrics.get("train_seconds"),
                eval_seconds=r.metrics.get("eval_seconds"),
                mlflow_run_id=r.metrics.get("mlflow_run_id"),
            )
            for r in sorted(runs, key=lambda r: r.name)
        ),
        efficiency_runs=tuple(
            EfficiencyRunRecord(
                name=r.name,
                train_seconds=r.final("train_seconds"),
                wall_seconds=r.metrics.get("wall_seconds"),
                mlflow_run_id=r.metrics.get("mlflow_run_id"),
            )
            for r in eff_runs
        ),
    )


def consistency_warnings(runs: Sequence[Run], profile: str, headline_bn: str) -> list[str]:
    """Runs produced under another profile or headline mode would silently mix protocols."""
    out = []
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
