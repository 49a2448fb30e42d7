"""Encoding optimality and cost on the data-efficiency study's decoders (repro.encoding).

From ``runs/encoding/<dataset>/summary.json``: per method, the loss of its own latent and of that
latent refined by the adaptive-step flow (the amortisation gap), the encode cost, and GFE's loss
from a random z(0) against z(0) = 0. Every comparison is paired over seeds and decided by
:func:`repro.report.verdicts.paired_verdict` at the report's level.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.records import EncodingMetrics
from repro.report.labels import dataset_label, loss_label, method_label
from repro.report.verdicts import paired_test, significance_level
from repro.stats import MeanCI, PairedDifference, mean_ci


@dataclass(frozen=True)
class MethodRow:
    method: str
    label: str
    n: int
    own: MeanCI
    refined: MeanCI
    gap: MeanCI
    gap_verdict: str  # refined vs own: "lower" (the flow removes loss), "not distinguishable", ...
    encode_nfe_per_image: float
    encode_ms_per_image: float
    refine_nfe: float


@dataclass(frozen=True)
class Comparison:
    """``a − b`` paired over seeds and its verdict (lower / higher / not distinguishable)."""

    a: str
    b: str
    difference: PairedDifference
    verdict: str


@dataclass(frozen=True)
class EncodingSection:
    status: str  # "run" or "not run"
    alpha: float = 0.05
    dataset: str = ""
    train_size: int = 0
    eval_images: int = 0
    loss: str = ""
    rows: tuple[MethodRow, ...] = ()
    gap_vs_gfe: tuple[Comparison, ...] = ()  # each other method's gap − GFE's gap
    random_start: Comparison | None = None  # GFE: loss from z(0) ~ N(0, I) − from z(0) = 0


def _values(record: EncodingMetrics, method: str, key: str) -> dict[int, float]:
    return {
        int(r["seed"]): float(r[key]) for r in record.rows if r["method"] == method and key in r
    }


def _compare(a: str, b: str, va: dict, vb: dict, confidence: float) -> Comparison | None:
    t = paired_test(va, vb, confidence)
    return None if t is None else Comparison(a, b, t.difference, t.verdict)


def encoding_section(record: EncodingMetrics | None, *, confidence: float) -> EncodingSection:
    if record is None:
        return EncodingSection(status="not run")
    methods = list(dict.fromkeys(str(r["method"]) for r in record.rows))
    rows = []
    for m in methods:
        own, refined = _values(record, m, "own_loss"), _values(record, m, "refined_loss")
        flow = _compare("refined", "own", refined, own, confidence)

        def mean(key: str, m: str = m) -> float:
            v = list(_values(record, m, key).values())
            return sum(v) / len(v) if v else float("nan")

        rows.append(
            MethodRow(
                method=m,
                label=method_label(m),
                n=len(own),
                own=mean_ci(list(own.values()), confidence),
                refined=mean_ci(list(refined.values()), confidence),
                gap=mean_ci(list(_values(record, m, "gap_loss").values()), confidence),
                gap_verdict=flow.verdict if flow else "not tested",
                # one evaluation covers the whole batch: per image it is the same count
                encode_nfe_per_image=mean("encode_nfe"),
                encode_ms_per_image=1000 * mean("encode_seconds_per_image"),
                refine_nfe=mean("refine_nfe"),
            )
        )
    gfe = next((m for m in methods if m.startswith("gfe")), None)
    gaps = {m: _values(record, m, "gap_loss") for m in methods}
    versus = ()
    random_start = None
    if gfe is not None:
        versus = tuple(
            c
            for m in methods
            if m != gfe
            and (c := _compare(method_label(m), method_label(gfe), gaps[m], gaps[gfe], confidence))
            is not None
        )
        random_start = _compare(
            "z(0) ~ N(0, I)",
            "z(0) = 0",
            _values(record, gfe, "random_start_loss"),
            _values(record, gfe, "own_loss"),
            confidence,
        )
    return EncodingSection(
        status="run",
        alpha=significance_level(confidence),
        dataset=dataset_label(record.dataset),
        train_size=record.train_size,
        eval_images=record.eval_images,
        loss=loss_label(record.loss),
        rows=tuple(rows),
        gap_vs_gfe=versus,
        random_start=random_start,
    )
