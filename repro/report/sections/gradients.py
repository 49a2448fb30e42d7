"""The Gradient Flow Encoding decoder-gradient section (docs/protocol.md §4).

The optional benchmark ``bench_gfe_gradients.json`` (exact backprop, adjoint and the
approximate gradient through the flow): its table and the approximate-vs-exact finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from repro.report.claims.registry import claims_by_id
from repro.report.sections.results import ordered

BENCH_MODES = ("backprop", "adjoint", "approximate")
# The published claim shown next to this section (id in claims.yaml).
GRADIENTS_CLAIMS = ("gfe-adjoint-not-necessary",)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def gradients_section(bench: Mapping[str, Any] | None, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder-gradient benchmark: its table and the approximate-vs-exact finding."""
    base: dict[str, Any] = {
        "present": bench is not None,
        "claims": claims_by_id(claims, GRADIENTS_CLAIMS),
    }
    if bench is None:
        return base
    results = [r for r in bench["results"] if isinstance(r, Mapping) and "mode" in r]
    by_mode = {str(r["mode"]): r for r in results}
    order = ordered(by_mode, BENCH_MODES)
    rows = [
        {
            "mode": mode,
            **{
                key: _float_or_none(by_mode[mode].get(key))
                for key in (
                    "seconds",
                    "peak_rss_mib",
                    "rss_growth_mib",
                    "forward_nfe",
                    "cosine_vs_backprop",
                    "relative_difference_vs_backprop",
                )
            },
        }
        for mode in order
    ]
    row = {r["mode"]: r for r in rows}
    finding = None
    approx, backprop, adjoint = row.get("approximate"), row.get("backprop"), row.get("adjoint")
    if approx and approx["cosine_vs_backprop"] is not None and approx["seconds"]:

        def ratio(other: dict[str, Any] | None) -> float | None:
            if not other or other["seconds"] is None:
                return None
            return other["seconds"] / approx["seconds"]

        finding = {
            "cosine": approx["cosine_vs_backprop"],
            "relative_difference": approx["relative_difference_vs_backprop"],
            "vs_backprop": ratio(backprop),
            "vs_adjoint": ratio(adjoint),
            "adjoint_cosine": adjoint["cosine_vs_backprop"] if adjoint else None,
        }
    settings = bench.get("settings") or {}
    return base | {
        "benchmark": bench.get("benchmark"),
        "device": bench.get("device"),
        "machine": bench.get("machine"),
        "torch": bench.get("torch"),
        "settings": [(str(k), v) for k, v in settings.items()],
        "rows": rows,
        "finding": finding,
    }
