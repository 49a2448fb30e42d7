"""Report section "Latent size (Table 1)".

Table 1 of the reproducibility report (GON validation loss at nz = 64, 128, 256): our losses in
both units next to the published numbers, from the latent study and from main runs at those nz,
with GON against the AE per nz (paired over seeds) and GON's trend in nz.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from repro.config import Params
from repro.report.formatting import ordered, published_text
from repro.report.labels import dataset_label, method_label
from repro.report.studies import figures as study_figures
from repro.report.studies.common import (
    BNModes,
    Failure,
    Scale,
    StudySection,
    bn_context,
    failures,
    finite_ci,
    main_scale,
    runs_of,
    study_scale,
)
from repro.report.study_runs import MSE, SSE, StudyRun, main_loss
from repro.stats import MeanCI, PairedDifference, paired_by_key


@dataclass(frozen=True)
class _Sample:
    """One scored model, from the latent study or the main matrix, in one shape."""

    source: str
    dataset: str
    method: str
    nz: int
    seed: int
    loss: Callable[[str, str, str], float | None]
    name: str


def _published_table1(claims: Mapping[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (str(c["dataset"]), int(c["nz"])): c
        for c in claims["claims"]
        if str(c["id"]).startswith("repro-table1-")
    }


def _samples(
    latent: Sequence[StudyRun], main_runs: Sequence[Any], table1_nz: Sequence[int]
) -> list[_Sample]:
    """The latent study's finished runs, then the main runs at a Table 1 nz."""
    samples: list[_Sample] = []
    for r in latent:
        if r.ok:
            samples.append(
                _Sample(
                    "latent study",
                    r.dataset,
                    r.method,
                    int(r.record["nz"]),
                    r.seed,
                    lambda s, b, u, r=r: r.loss(s, b, u),
                    r.name,
                )
            )
    for run in main_runs:
        if int(run.nz) in table1_nz and run.method in ("gon", "ae", "ae_linear"):
            samples.append(
                _Sample(
                    "main runs",
                    run.dataset,
                    run.method,
                    int(run.nz),
                    int(run.seed),
                    lambda s, b, u, run=run: main_loss(run, s, b, u),
                    run.name,
                )
            )
    return samples


@dataclass(frozen=True)
class LatentSource:
    """Where rows come from ("latent study" or "main runs") and the scale its runs trained at."""

    name: str
    scale: Scale


@dataclass(frozen=True)
class LatentCell:
    """One row's losses in one BN mode, per split and unit, over seeds."""

    val_sse_per_image: MeanCI | None
    val_mse_per_pixel: MeanCI | None
    test_sse_per_image: MeanCI | None
    test_mse_per_pixel: MeanCI | None


@dataclass(frozen=True)
class LatentRow:
    """One dataset × nz × source × method, with the published Table 1 value (``pub``, the
    claim; GON only) and ours over it per BN mode."""

    dataset_id: str
    nz: int
    method_id: str
    source: str
    n: int
    modes: dict[str, LatentCell]
    pub: Mapping[str, Any] | None

    @property
    def dataset(self) -> str:
        return dataset_label(self.dataset_id)

    @property
    def method(self) -> str:
        return method_label(self.method_id)

    @property
    def published(self) -> str | None:
        return published_text(self.pub) if self.pub else None

    @property
    def ratio(self) -> dict[str, float | None]:
        """Per BN mode: our validation SSE per image over the published value."""
        value = float(self.pub["value"]) if self.pub else 0.0
        return {
            mode: cell.val_sse_per_image.mean / value
            if value and cell.val_sse_per_image is not None
            else None
            for mode, cell in self.modes.items()
        }


@dataclass(frozen=True)
class NzContrast:
    """GON − AE at one nz: held-out test loss (headline BN mode), paired over seeds."""

    nz: int
    diff: PairedDifference

    @property
    def n(self) -> int:
        return self.diff.n

    @property
    def lower(self) -> bool:
        """GON's mean is lower."""
        return self.diff.mean < 0


@dataclass(frozen=True)
class LatentFinding:
    """Per dataset × source: GON against the AE per nz and GON's validation loss per nz."""

    dataset_id: str
    source: str
    per_nz: tuple[NzContrast, ...]
    gon_val: tuple[tuple[int, float], ...]  # (nz, mean validation SSE per image), by nz

    @property
    def dataset(self) -> str:
        return dataset_label(self.dataset_id)

    @property
    def gon_lower_at(self) -> list[int]:
        return [f.nz for f in self.per_nz if f.lower]

    @property
    def ae_lower_at(self) -> list[int]:
        return [f.nz for f in self.per_nz if not f.lower]

    @property
    def gon_nz(self) -> list[int]:
        return [nz for nz, _ in self.gon_val]

    @property
    def gon_falls_with_nz(self) -> bool | None:
        """Whether GON's validation loss falls strictly with nz; None with one nz or none."""
        means = [mean for _, mean in self.gon_val]
        if len(means) < 2:
            return None
        return all(b < a for a, b in zip(means, means[1:], strict=False))


@dataclass(frozen=True)
class LatentSection:
    """The latent-size section: our rows next to Table 1 of the reproducibility report."""

    status: str  # "run" or "not run"
    bn: BNModes
    table1_nz: list[int]
    unit: str | None  # Table 1's unit as the claims state it
    epochs_published: int | None
    sources: tuple[LatentSource, ...]
    failures: tuple[Failure, ...]
    rows: tuple[LatentRow, ...] = ()
    findings: tuple[LatentFinding, ...] = ()
    figure: str | None = None

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """The range of ours / published (headline BN mode) over the rows that have one."""
        ratios = [v for r in self.rows if (v := r.ratio[self.bn.headline]) is not None]
        return (min(ratios), max(ratios)) if ratios else None


def latent_section(
    runs: Sequence[StudyRun],
    main_runs: Sequence[Any],
    params: Params,
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> StudySection[LatentSection]:
    """Rows dataset × nz × method × source, with the published Table 1 value next to GON."""
    bn = bn_context(headline_bn)
    published = _published_table1(claims)
    table1_nz = sorted({nz for _, nz in published})
    scales = {"latent study": study_scale(params, "latent"), "main runs": main_scale(params)}
    latent = runs_of("latent", runs)
    samples = _samples(latent, main_runs, table1_nz)
    section = partial(
        LatentSection,
        status="run" if samples else "not run",
        bn=bn,
        table1_nz=table1_nz,
        unit=next((c["unit"] for c in published.values()), None),
        epochs_published=next((c.get("epochs") for c in published.values()), None),
        sources=tuple(
            LatentSource(name, scale)
            for name, scale in scales.items()
            if any(s.source == name for s in samples)
        ),
        failures=failures(latent),
    )
    if not samples:
        return StudySection(section())
    lat = params.studies.latent
    datasets = ordered({s.dataset for s in samples}, lat.datasets)
    methods = ordered({s.method for s in samples}, [*lat.methods, "gon", "ae", "ae_linear"])
    rows: list[LatentRow] = []
    points: list[dict[str, Any]] = []
    findings: list[LatentFinding] = []
    for dataset in datasets:
        for nz in sorted({s.nz for s in samples if s.dataset == dataset}):
            for source in scales:
                for method in methods:
                    key = (dataset, nz, source, method)
                    group = [s for s in samples if (s.dataset, s.nz, s.source, s.method) == key]
                    if group:
                        pub = published.get((dataset, nz)) if method == "gon" else None
                        rows.append(_row(key, group, pub, bn.modes, confidence))
                        points += _points(key, group, headline_bn)
        findings.extend(_latent_findings(rows, samples, dataset, headline_bn, confidence))
    plot = partial(
        study_figures.plot_latent,
        methods=methods,
        datasets=datasets,
        bn=bn.headline,
        confidence=confidence,
    )
    model = section(rows=tuple(rows), findings=tuple(findings))
    return StudySection(model, pd.DataFrame(points), plot)


def _row(
    key: tuple[str, int, str, str],
    group: Sequence[_Sample],
    pub: Mapping[str, Any] | None,
    modes: Sequence[str],
    confidence: float,
) -> LatentRow:
    """One dataset × nz × source × method: losses per BN mode, split and unit."""
    dataset, nz, source, method = key

    def ci(split: str, mode: str, unit: str) -> MeanCI | None:
        return finite_ci((s.loss(split, mode, unit) for s in group), confidence)

    cells = {
        mode: LatentCell(
            val_sse_per_image=ci("val", mode, SSE),
            val_mse_per_pixel=ci("val", mode, MSE),
            test_sse_per_image=ci("test", mode, SSE),
            test_mse_per_pixel=ci("test", mode, MSE),
        )
        for mode in modes
    }
    return LatentRow(dataset, nz, method, source, len(group), cells, pub)


def _points(
    key: tuple[str, int, str, str], group: Sequence[_Sample], headline_bn: str
) -> list[dict[str, Any]]:
    """The figure's points: each sample's headline test loss in SSE per image."""
    dataset, nz, source, method = key
    return [
        {
            "dataset": dataset,
            "nz": nz,
            "method": method,
            "source": source,
            "seed": s.seed,
            "loss": v,
        }
        for s in group
        if (v := s.loss("test", headline_bn, SSE)) is not None
    ]


def _latent_findings(
    rows: Sequence[LatentRow],
    samples: Sequence[_Sample],
    dataset: str,
    headline_bn: str,
    confidence: float,
) -> list[LatentFinding]:
    """Per dataset × source: GON vs AE per nz (paired over seeds) and GON's trend in nz."""
    out = []
    for source in dict.fromkeys(r.source for r in rows if r.dataset_id == dataset):
        mine = [r for r in rows if r.dataset_id == dataset and r.source == source]
        per_nz = []
        for nz in sorted({r.nz for r in mine}):
            seeds = {
                method: {
                    s.seed: v
                    for s in samples
                    if (s.dataset, s.nz, s.source, s.method) == (dataset, nz, source, method)
                    and (v := s.loss("test", headline_bn, SSE)) is not None
                }
                for method in ("gon", "ae")
            }
            if (d := paired_by_key(seeds["gon"], seeds["ae"], confidence)) is not None:
                per_nz.append(NzContrast(nz, d))
        gon_val = sorted(
            (r.nz, ci.mean)
            for r in mine
            if r.method_id == "gon" and (ci := r.modes[headline_bn].val_sse_per_image)
        )
        out.append(LatentFinding(dataset, source, tuple(per_nz), tuple(gon_val)))
    return out
