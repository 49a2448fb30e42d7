"""The Gradient Flow Encoding decoder-gradient section (docs/protocol.md §4).

The optional benchmark ``bench_gfe_gradients.json`` (exact backprop, adjoint and the
approximate gradient through the flow): its table and the approximate-vs-exact finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from repro.report.claims.registry import claims_by_id
from repro.report.formatting import ordered
from repro.report.loaders import BenchResult, GradientBenchmark

BENCH_MODES = ("backprop", "adjoint", "approximate")
# The published claim shown next to this section (id in claims.yaml).
GRADIENTS_CLAIMS = ("gfe-adjoint-not-necessary",)


@dataclass(frozen=True)
class GradientFinding:
    """The approximate (detached) gradient against the exact ones, the measured side of "the
    costly adjoint integrals are not entirely necessary" (Flouris et al., arXiv 2105.05031): its
    cosine and relative difference with backprop, and how many times less time than backprop and
    the adjoint it took (None when that mode has no time)."""

    cosine: float
    relative_difference: float | None
    vs_backprop: float | None
    vs_adjoint: float | None
    adjoint_cosine: float | None  # the adjoint's cosine with backprop


@dataclass(frozen=True)
class GradientsSection:
    """The published claim, and the benchmark when it was run: one row per mode (known modes
    first, in :data:`BENCH_MODES` order; of a mode measured twice, the last result)."""

    claims: tuple[Mapping[str, Any], ...]
    bench: GradientBenchmark | None

    @property
    def present(self) -> bool:
        return self.bench is not None

    @property
    def rows(self) -> tuple[BenchResult, ...]:
        if self.bench is None:
            return ()
        by_mode = {r.mode: r for r in self.bench.results if r.mode is not None}
        return tuple(by_mode[m] for m in ordered(by_mode, BENCH_MODES))

    @property
    def finding(self) -> GradientFinding | None:
        """None when no approximate-mode row has both a cosine and a non-zero time."""
        row = {r.mode: r for r in self.rows}
        approx, adjoint = row.get("approximate"), row.get("adjoint")
        if not approx or approx.cosine_vs_backprop is None or not approx.seconds:
            return None
        seconds = approx.seconds

        def ratio(other: BenchResult | None) -> float | None:
            if not other or other.seconds is None:
                return None
            return other.seconds / seconds

        return GradientFinding(
            cosine=approx.cosine_vs_backprop,
            relative_difference=approx.relative_difference_vs_backprop,
            vs_backprop=ratio(row.get("backprop")),
            vs_adjoint=ratio(adjoint),
            adjoint_cosine=adjoint.cosine_vs_backprop if adjoint else None,
        )


def gradients_section(
    bench: GradientBenchmark | None, claims: Mapping[str, Any]
) -> GradientsSection:
    """The decoder-gradient benchmark: its table and the approximate-vs-exact finding."""
    return GradientsSection(claims=tuple(claims_by_id(claims, GRADIENTS_CLAIMS)), bench=bench)
