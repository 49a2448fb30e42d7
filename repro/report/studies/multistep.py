"""Report section "Multi-step GON": k gradient steps from the origin.

The reproducibility report's extension (two steps lower the training loss): per k, the final
training loss, the held-out loss and the cost (seconds per epoch, autograd graph bytes per step);
every k > 1 against k = 1, paired over seeds and Holm-corrected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from repro.config import BN_MODES, Params
from repro.report.studies import figures as study_figures
from repro.report.studies.common import (
    NOT_COMPARED,
    BNModes,
    StudyHead,
    StudySection,
    VersusReference,
    bn_context,
    by_seed,
    finite_ci,
    finite_mean,
    runs_of,
    versus,
)
from repro.report.study_runs import MSE, SPLITS, SSE, StudyRun
from repro.report.verdicts import (
    HIGHER,
    LOWER,
    NOT_TESTED,
    ReferenceComparison,
    compare_with_reference,
    significance_level,
)
from repro.stats import MeanCI

MB = 1024 * 1024
Metric = Callable[[StudyRun], float | None]


@dataclass(frozen=True)
class Cost:
    """Mean cost of one k's finished runs (None where no run recorded it)."""

    seconds_per_epoch: float | None
    graph_bytes: float | None  # bytes autograd saves for one training step's backward pass
    cuda_peak_bytes: float | None

    @property
    def graph_mb(self) -> float | None:
        return None if self.graph_bytes is None else self.graph_bytes / MB

    @property
    def cuda_peak_mb(self) -> float | None:
        return None if self.cuda_peak_bytes is None else self.cuda_peak_bytes / MB


@dataclass(frozen=True)
class MultistepRow:
    """One k: its losses and cost over seeds, and per loss its contrast with the baseline k.

    ``contrasts`` is keyed by loss: ``train`` (SSE per image) and ``test_<mode>`` per BN mode.
    """

    k: int
    n: int  # finished runs
    failed: int
    train_mse: MeanCI | None
    train_sse: MeanCI | None
    test: dict[str, MeanCI | None]  # per BN mode
    # How far the k steps move the latent: with batch statistics the first step is scaled by
    # 1/sqrt(eps) (docs/protocol.md §5, BatchNorm mode), so later steps may barely move it.
    latent_norm: MeanCI | None
    seconds_per_epoch: MeanCI | None
    cost: Cost
    learned_step_size: MeanCI | None
    contrasts: dict[str, VersusReference]

    @property
    def graph_mb(self) -> float | None:
        return self.cost.graph_mb

    @property
    def cuda_peak_mb(self) -> float | None:
        return self.cost.cuda_peak_mb


@dataclass(frozen=True)
class MultistepFinding:
    """A k other than the baseline: each loss's verdict against the baseline k and the cost
    ratios to it (None where either cost is missing or the baseline's is 0)."""

    row: MultistepRow
    baseline: Cost

    @property
    def k(self) -> int:
        return self.row.k

    @property
    def verdict(self) -> dict[str, str]:
        return {key: c.verdict for key, c in self.row.contrasts.items()}

    @property
    def seconds_ratio(self) -> float | None:
        return _ratio(self.row.cost.seconds_per_epoch, self.baseline.seconds_per_epoch)

    @property
    def graph_ratio(self) -> float | None:
        return _ratio(self.row.cost.graph_bytes, self.baseline.graph_bytes)

    @property
    def cuda_ratio(self) -> float | None:
        return _ratio(self.row.cost.cuda_peak_bytes, self.baseline.cuda_peak_bytes)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


@dataclass(frozen=True, kw_only=True)
class MultistepSection(StudyHead):
    """The multi-step section: one row per k, every other k against the baseline k (k = 1
    when it ran, else the smallest), Holm-corrected at significance level ``alpha``."""

    alpha: float
    learn_step_size: bool
    step_size: float
    rows: tuple[MultistepRow, ...] = ()
    baseline: int | None = None

    @property
    def findings(self) -> tuple[MultistepFinding, ...]:
        base = next((r.cost for r in self.rows if r.k == self.baseline), None)
        if base is None:
            return ()
        return tuple(MultistepFinding(r, base) for r in self.rows if r.k != self.baseline)

    def _ks_where(self, key: str, verdict: str) -> list[int]:
        return [f.k for f in self.findings if f.verdict[key] == verdict]

    @property
    def lower_test(self) -> list[int]:
        """The k whose held-out loss (headline BN mode) is significantly below the baseline's."""
        return self._ks_where(f"test_{self.bn.headline}", LOWER)

    @property
    def higher_test(self) -> list[int]:
        return self._ks_where(f"test_{self.bn.headline}", HIGHER)

    @property
    def lower_train(self) -> list[int]:
        return self._ks_where("train", LOWER)

    @property
    def higher_train(self) -> list[int]:
        return self._ks_where("train", HIGHER)

    @property
    def tested(self) -> bool:
        """Whether any k had a paired test against the baseline in the headline BN mode."""
        head = f"test_{self.bn.headline}"
        return any(f.verdict[head] not in (NOT_TESTED, NOT_COMPARED) for f in self.findings)

    @property
    def any_cuda(self) -> bool:
        return any(row.cuda_peak_mb is not None for row in self.rows)


def _pixels(r: StudyRun) -> float | None:
    """Values per image (pixels × channels): the ratio of the run's own two loss units."""
    for split in SPLITS:
        for mode in BN_MODES:
            sse, mse = r.loss(split, mode, SSE), r.loss(split, mode, MSE)
            if sse is not None and mse:
                return round(sse / mse)
    return None


def _train_sse(r: StudyRun) -> float | None:
    mse, px = r.value("final_train_mse_per_pixel"), _pixels(r)
    return mse * px if mse is not None and px else None


def multistep_section(
    runs: Sequence[StudyRun],
    params: Params,
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> StudySection[MultistepSection]:
    """Per k: losses and cost; k > 1 against k = 1 (paired over seeds, Holm-corrected)."""
    m = params.studies.multistep
    mine, bn = runs_of("multistep", runs), bn_context(headline_bn)
    section = partial(
        MultistepSection.of,
        "multistep",
        mine,
        params,
        claims,
        bn,
        alpha=significance_level(confidence),
        learn_step_size=m.learn_step_size,
        step_size=m.step_size,
    )
    if not mine:
        return StudySection(section())
    ks = sorted({int(r.record.get("steps", 1)) for r in mine})
    of_k = {k: [r for r in mine if int(r.record.get("steps", 1)) == k] for k in ks}
    metrics: dict[str, Metric] = {
        "train": _train_sse,
        **{f"test_{mode}": (lambda r, mode=mode: r.loss("test", mode)) for mode in bn.modes},
    }
    baseline = 1 if 1 in ks else ks[0]
    comps = {
        key: compare_with_reference(
            {str(k): by_seed(of_k[k], get) for k in ks}, str(baseline), confidence
        )
        for key, get in metrics.items()
    }
    rows = [_row(k, of_k[k], comps, bn, confidence) for k in ks]
    points = [_point(k, r, bn.modes) for k in ks for r in of_k[k] if r.ok]
    plot = partial(study_figures.plot_multistep, modes=bn.modes, confidence=confidence)
    return StudySection(section(rows=tuple(rows), baseline=baseline), pd.DataFrame(points), plot)


def _cost(ok: Sequence[StudyRun]) -> Cost:
    """Mean cost of one k's finished runs: seconds per epoch, graph and CUDA peak bytes."""
    return Cost(
        seconds_per_epoch=finite_mean(r.value("seconds_per_epoch") for r in ok),
        graph_bytes=finite_mean(r.value("graph_bytes_per_step") for r in ok),
        cuda_peak_bytes=finite_mean(r.value("cuda_peak_bytes") for r in ok),
    )


def _row(
    k: int,
    group: Sequence[StudyRun],
    comps: Mapping[str, ReferenceComparison | None],
    bn: BNModes,
    confidence: float,
) -> MultistepRow:
    """One table row: k's losses, cost and contrasts with the baseline k."""
    ok = [r for r in group if r.ok]
    learned = [v for r in ok if (v := r.value("learned_step_size")) is not None]
    return MultistepRow(
        k=k,
        n=len(ok),
        failed=len(group) - len(ok),
        train_mse=finite_ci((r.value("final_train_mse_per_pixel") for r in ok), confidence),
        train_sse=finite_ci((_train_sse(r) for r in ok), confidence),
        test={mode: finite_ci((r.loss("test", mode) for r in ok), confidence) for mode in bn.modes},
        latent_norm=finite_ci((r.loss("test", bn.headline, "latent_norm") for r in ok), confidence),
        seconds_per_epoch=finite_ci((r.value("seconds_per_epoch") for r in ok), confidence),
        cost=_cost(ok),
        learned_step_size=finite_ci(learned, confidence),
        # this k − baseline
        contrasts={key: VersusReference(versus(comp, str(k))) for key, comp in comps.items()},
    )


def _point(k: int, r: StudyRun, modes: Sequence[str]) -> dict[str, Any]:
    """The figure's point of one finished run."""
    return {
        "k": k,
        "seed": r.seed,
        "train_sse": _train_sse(r),
        **{f"test_{mode}": r.loss("test", mode) for mode in modes},
        "seconds_per_epoch": r.value("seconds_per_epoch"),
        "graph_mb": None if (g := r.value("graph_bytes_per_step")) is None else g / MB,
    }
