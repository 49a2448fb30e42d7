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
from repro.report.formatting import published_text
from repro.report.labels import dataset_label, method_label
from repro.report.studies import figures as study_figures
from repro.report.studies.common import (
    StudySection,
    bn_context,
    failures,
    finite_ci,
    main_scale,
    ordered,
    study_scale,
)
from repro.report.study_runs import MSE, SPLITS, SSE, StudyRun, main_loss
from repro.stats import paired_by_key


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


def latent_section(
    runs: Sequence[StudyRun],
    main_runs: Sequence[Any],
    params: Params,
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> StudySection:
    """Rows dataset × nz × method × source, with the published Table 1 value next to GON."""
    bn = bn_context(headline_bn)
    published = _published_table1(claims)
    table1_nz = sorted({nz for _, nz in published})
    sources = {"latent study": study_scale(params, "latent"), "main runs": main_scale(params)}
    latent = [r for r in runs if r.study == "latent"]
    samples = _samples(latent, main_runs, table1_nz)
    base: dict[str, Any] = {
        "status": "run" if samples else "not run",
        "bn": bn,
        "table1_nz": table1_nz,
        "unit": next((c["unit"] for c in published.values()), None),
        "epochs_published": next((c.get("epochs") for c in published.values()), None),
        "sources": [
            {"name": name, "scale": scale}
            for name, scale in sources.items()
            if any(s.source == name for s in samples)
        ],
        "rows": [],
        "findings": [],
        "failures": failures(latent),
        "figure": None,
    }
    if not samples:
        return StudySection(base)
    lat = params.studies.latent
    datasets = ordered({s.dataset for s in samples}, lat.datasets)
    methods = ordered({s.method for s in samples}, [*lat.methods, "gon", "ae", "ae_linear"])
    rows: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for dataset in datasets:
        for nz in sorted({s.nz for s in samples if s.dataset == dataset}):
            for source in sources:
                for method in methods:
                    key = (dataset, nz, source, method)
                    group = [s for s in samples if (s.dataset, s.nz, s.source, s.method) == key]
                    if group:
                        pub = published.get((dataset, nz)) if method == "gon" else None
                        rows.append(_row(key, group, pub, bn.modes, confidence))
                        points += _points(key, group, headline_bn)
        findings.extend(_latent_findings(rows, samples, dataset, headline_bn, confidence))
    ratios = [r["ratio"][headline_bn] for r in rows if r["ratio"].get(headline_bn) is not None]
    context = base | {
        "rows": rows,
        "findings": findings,
        "ratio_range": (min(ratios), max(ratios)) if ratios else None,
    }
    plot = partial(
        study_figures.plot_latent,
        methods=methods,
        datasets=datasets,
        bn=bn.headline,
        confidence=confidence,
    )
    return StudySection(context, pd.DataFrame(points), plot)


def _row(
    key: tuple[str, int, str, str],
    group: Sequence[_Sample],
    pub: Mapping[str, Any] | None,
    modes: Sequence[str],
    confidence: float,
) -> dict[str, Any]:
    """One dataset × nz × source × method: losses per BN mode, split and unit; ours/published."""
    dataset, nz, source, method = key
    cells = {
        mode: {
            f"{split}_{unit}": finite_ci((s.loss(split, mode, unit) for s in group), confidence)
            for split in SPLITS
            for unit in (SSE, MSE)
        }
        for mode in modes
    }
    ratio = {}
    for mode in modes:
        ours = cells[mode]["val_sse_per_image"]
        ratio[mode] = (
            ours.mean / float(pub["value"])
            if pub and ours is not None and float(pub["value"])
            else None
        )
    return {
        "dataset": dataset_label(dataset),
        "dataset_id": dataset,
        "nz": nz,
        "method": method_label(method),
        "method_id": method,
        "source": source,
        "n": len(group),
        "modes": cells,
        "published": published_text(pub) if pub else None,
        "ratio": ratio,
    }


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
    rows: Sequence[dict[str, Any]],
    samples: Sequence[_Sample],
    dataset: str,
    headline_bn: str,
    confidence: float,
) -> list[dict[str, Any]]:
    """Per dataset × source: GON vs AE per nz (paired over seeds) and GON's trend in nz."""
    out = []
    for source in dict.fromkeys(r["source"] for r in rows if r["dataset_id"] == dataset):
        mine = [r for r in rows if r["dataset_id"] == dataset and r["source"] == source]
        per_nz = []
        for nz in sorted({r["nz"] for r in mine}):
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
                per_nz.append({"nz": nz, "diff": d, "n": d.n, "lower": d.mean < 0})
        gon_val = [
            (r["nz"], r["modes"][headline_bn]["val_sse_per_image"])
            for r in mine
            if r["method_id"] == "gon" and r["modes"][headline_bn]["val_sse_per_image"]
        ]
        means = [ci.mean for _, ci in sorted(gon_val)]
        falls = (
            all(b < a for a, b in zip(means, means[1:], strict=False)) if len(means) > 1 else None
        )
        out.append(
            {
                "dataset": dataset_label(dataset),
                "source": source,
                "per_nz": per_nz,
                "gon_lower_at": [f["nz"] for f in per_nz if f["lower"]],
                "ae_lower_at": [f["nz"] for f in per_nz if not f["lower"]],
                "gon_falls_with_nz": falls,
                "gon_nz": [nz for nz, _ in sorted(gon_val)],
            }
        )
    return out
