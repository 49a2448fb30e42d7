"""Generalisation to unseen classes (repro.transfer): trained on digits 0–4, scored on 5–9.

Per method: the held-out test SSE per image on unseen and on seen classes, mean over seeds; each
other method against the AE on unseen classes, paired over seeds and decided by
:func:`repro.report.verdicts.paired_verdict`; the words of the finding follow those verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from repro.report.labels import dataset_label, method_label
from repro.report.loaders import EfficiencyRun
from repro.report.verdicts import paired_test, significance_level
from repro.stats import MeanCI, PairedDifference, mean_ci

BASELINE = "ae"  # every other method is compared with the autoencoder
UNSEEN, SEEN = "test_sse_per_image", "seen_test_sse_per_image"


@dataclass(frozen=True)
class TransferRow:
    label: str
    n: int
    unseen: MeanCI
    seen: MeanCI
    penalty: MeanCI  # unseen − seen: what leaving the training classes costs


@dataclass(frozen=True)
class TransferComparison:
    label: str  # the method compared with the AE
    difference: PairedDifference  # method − AE, unseen-class SSE, paired over seeds
    verdict: str  # lower / higher / not distinguishable / not tested


@dataclass(frozen=True)
class TransferSection:
    status: str  # "run" or "not run"
    alpha: float = 0.05
    dataset: str = ""
    train_images: int = 0
    eval_images: int = 0
    steps: int = 0
    rows: tuple[TransferRow, ...] = ()
    versus_ae: tuple[TransferComparison, ...] = ()


def transfer_section(
    runs: Sequence[EfficiencyRun], methods: Sequence[str], *, confidence: float
) -> TransferSection:
    if not runs:
        return TransferSection(status="not run")

    def by_seed(method: str, key: str) -> dict[int, float]:
        return {r.seed: v for r in runs if r.method == method and (v := r.final(key)) is not None}

    present = [m for m in methods if any(r.method == m for r in runs)]
    rows = []
    for m in present:
        unseen, seen = by_seed(m, UNSEEN), by_seed(m, SEEN)
        rows.append(
            TransferRow(
                label=method_label(m),
                n=len(unseen),
                unseen=mean_ci(list(unseen.values()), confidence),
                seen=mean_ci(list(seen.values()), confidence),
                penalty=mean_ci([unseen[s] - seen[s] for s in unseen if s in seen], confidence),
            )
        )
    alpha = significance_level(confidence)
    versus = []
    for m in present:
        if m == BASELINE or BASELINE not in present:
            continue
        t = paired_test(by_seed(m, UNSEEN), by_seed(BASELINE, UNSEEN), confidence)
        if t is not None:
            versus.append(TransferComparison(method_label(m), t.difference, t.verdict))
    first = runs[0]
    return TransferSection(
        status="run",
        alpha=alpha,
        dataset=dataset_label(first.dataset),
        train_images=first.train_size,
        eval_images=int(first.metrics.get("eval_images", 0)),
        steps=int(first.metrics.get("steps", 0)),
        rows=tuple(rows),
        versus_ae=tuple(versus),
    )
