"""The diagnosis of GON with the MLP decoder in the data-efficiency study (repro.diagnosis).

From ``runs/diagnosis/<dataset>/gon_mlp.json``: per variant of the GON step, the latent norm, the
test SSE of D(z) and of D(0) over seeds; each variant against the study's setting (paired over
seeds, Holm-corrected: :func:`repro.report.verdicts.holm_contrasts`); and the finding, worded
from those numbers. The conv GON's latent norm in the main runs is shown beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from repro.records import DiagnosisMetrics
from repro.report.labels import dataset_label
from repro.report.loaders import Run
from repro.report.verdicts import HIGHER, LOWER, holm_contrasts, significance_level
from repro.stats import MeanCI, mean_ci

AS_RUN = "as_run"  # the variant that is the study's own setting (repro.diagnosis.VARIANTS)
# The latent is "inert" when decoding it beats decoding the origin by less than this fraction of
# the origin's loss (the upper end of the gap's interval; the mean with one seed).
INERT_FRACTION = 0.01


@dataclass(frozen=True)
class VariantRow:
    variant: str
    what: str
    n: int
    step_size: float  # η after training, mean over seeds
    latent_norm: MeanCI
    test_sse: MeanCI
    origin_sse: MeanCI
    gap: MeanCI  # SSE of D(0) minus SSE of D(z): what the latent carries
    versus_as_run: str  # lower / higher / not distinguishable / "" for the study's setting
    p_holm: float | None


@dataclass(frozen=True)
class DiagnosisSection:
    status: str  # "run" or "not run"
    alpha: float = 0.05  # the contrasts' family-wise level (verdicts.significance_level)
    dataset: str = ""
    train_size: int = 0
    steps: int = 0
    eval_images: int = 0
    inner_loss_divisor: int = 0
    rows: tuple[VariantRow, ...] = ()
    conv_latent_norm: MeanCI | None = None  # the main runs' GON (conv decoder, BatchNorm)
    latent_is_inert: bool = False  # as run, D(z) beats D(0) by < INERT_FRACTION of its loss
    recovers: tuple[str, ...] = ()  # lower test SSE than the study's setting, latent not inert
    still_inert: tuple[str, ...] = ()  # other variants whose latent stays inert


def _by_seed(record: DiagnosisMetrics, variant: str, key: str) -> dict[int, float]:
    return {int(r["seed"]): float(r[key]) for r in record.rows if r["variant"] == variant}


def diagnosis_section(
    record: DiagnosisMetrics | None,
    main_runs: Sequence[Run],
    *,
    confidence: float,
    headline_bn: str,
) -> DiagnosisSection:
    if record is None:
        return DiagnosisSection(status="not run")
    variants = list(record.variants)
    sse = {v: _by_seed(record, v, "test_sse_per_image") for v in variants}
    contrasts = {c.other: c for c in holm_contrasts(sse, AS_RUN, confidence)}
    # holm_contrasts gives as_run − variant: as_run HIGHER means the variant is lower
    flipped = {HIGHER: LOWER, LOWER: HIGHER}
    rows = []
    for v in variants:
        origin = _by_seed(record, v, "origin_sse_per_image")
        c = contrasts.get(v)
        rows.append(
            VariantRow(
                variant=v,
                what=record.variants[v],
                n=len(sse[v]),
                step_size=sum(_by_seed(record, v, "step_size").values()) / max(len(sse[v]), 1),
                latent_norm=mean_ci(list(_by_seed(record, v, "latent_norm").values()), confidence),
                test_sse=mean_ci(list(sse[v].values()), confidence),
                origin_sse=mean_ci(list(origin.values()), confidence),
                gap=mean_ci([origin[s] - sse[v][s] for s in sse[v]], confidence),
                versus_as_run="" if c is None else flipped.get(c.verdict, c.verdict),
                p_holm=None if c is None else c.p_holm,
            )
        )
    as_run = next((r for r in rows if r.variant == AS_RUN), None)
    conv = [
        float(r.metrics["losses"][headline_bn]["test"]["latent_norm"])
        for r in main_runs
        if r.method == "gon" and "latent_norm" in r.metrics["losses"][headline_bn]["test"]
    ]
    return DiagnosisSection(
        status="run",
        alpha=significance_level(confidence),
        dataset=dataset_label(record.dataset),
        train_size=record.train_size,
        steps=record.steps,
        eval_images=record.eval_images,
        inner_loss_divisor=record.inner_loss_divisor,
        rows=tuple(rows),
        conv_latent_norm=mean_ci(conv, confidence) if conv else None,
        latent_is_inert=as_run is not None and is_inert(as_run),
        recovers=tuple(r.variant for r in rows if r.versus_as_run == LOWER and not is_inert(r)),
        still_inert=tuple(r.variant for r in rows if r.variant != AS_RUN and is_inert(r)),
    )


def is_inert(row: VariantRow) -> bool:
    """Decoding the latent beats decoding the origin by less than INERT_FRACTION of the loss."""
    gap = row.gap.mean if row.gap.n < 2 else row.gap.high
    return gap < INERT_FRACTION * row.origin_sse.mean
