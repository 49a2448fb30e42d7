"""The published-numbers and parameter-count sections.

Table 1 of the reproducibility report and the independent Julia reproduction (both in
``claims.yaml``, with their sources) next to our numbers at matching dataset and nz, and the
models' parameter counts next to the published GON/AE ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from repro.report.claims.registry import published_parameter_ratio
from repro.report.formatting import published_text
from repro.report.labels import dataset_label, method_label
from repro.report.loaders import Run
from repro.report.sections.results import ci_of


def _ours_cell(
    results: pd.DataFrame,
    datasets_run: set[str],
    datasets_listed: set[str],
    dataset: str,
    nz: int,
    method: str,
    split: str,
    bn: str,
) -> dict[str, Any]:
    """Our matching number, or an explicit reason why there is none."""
    if dataset not in datasets_listed and dataset not in datasets_run:
        return {"ci": None, "reason": "dataset not in this study"}
    if dataset not in datasets_run:
        return {"ci": None, "reason": "dataset not run in this profile"}
    ci = ci_of(
        results, "sse_per_image", dataset=dataset, method=method, nz=nz, bn_mode=bn, split=split
    )
    if ci is None:
        return {"ci": None, "reason": "no main run at this nz in this profile"}
    return {"ci": ci, "reason": None}


def published_section(
    claims: Mapping[str, Any],
    results: pd.DataFrame,
    *,
    datasets_run: set[str],
    datasets_listed: set[str],
    bn_modes: Sequence[str],
) -> dict[str, Any]:
    """Table 1 and the Julia reproduction next to our numbers at matching (dataset, nz)."""
    items = claims["claims"]
    sources = claims["sources"]

    def ours(dataset: str, nz: int, method: str, split: str) -> dict[str, dict[str, Any]]:
        return {
            mode: _ours_cell(
                results, datasets_run, datasets_listed, dataset, nz, method, split, mode
            )
            for mode in bn_modes
        }

    table1 = [
        {
            "claim": c,
            "dataset": dataset_label(c["dataset"]),
            "published": published_text(c),
            "ours": ours(c["dataset"], int(c["nz"]), "gon", c["split"]),
        }
        for c in items
        if c["id"].startswith("repro-table1-")
    ]
    julia = []
    for c in items:
        if not c["id"].startswith("julia-test-"):
            continue
        ae_id = c["id"].replace("julia-test-", "julia-ae-test-")
        ae = next((a for a in items if a["id"] == ae_id), None)
        julia.append(
            {
                "claim": c,
                "dataset": dataset_label(c["dataset"]),
                "nz": c["nz"],
                "gon_published": published_text(c),
                "ae_published": published_text(ae) if ae else "not available",
                "ours_gon": ours(c["dataset"], int(c["nz"]), "gon", "test"),
                "ours_ae": ours(c["dataset"], int(c["nz"]), "ae", "test"),
            }
        )
    return {
        "table1": table1,
        "table1_source": sources["repro_report"]["cite"],
        "table1_unit": next(
            (c["unit"] for c in items if c["id"].startswith("repro-table1-")), None
        ),
        "julia": julia,
        "julia_source": sources["julia_repro"],
        "sources": sources,
    }


def parameters_section(
    runs: Sequence[Run], claims: Mapping[str, Any], methods: Sequence[str]
) -> dict[str, Any]:
    """n_params per method and nz (from metrics), the GON/AE ratio, and the published counts."""
    counts: dict[tuple[str, int], set[int]] = {}
    for r in runs:
        if "n_params" in r.metrics:
            counts.setdefault((r.method, r.nz), set()).add(int(r.metrics["n_params"]))
    order = {m: i for i, m in enumerate(methods)}
    rows = [
        {"method": method_label(m), "method_id": m, "nz": nz, "n_params": sorted(v)}
        for (m, nz), v in sorted(
            counts.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])
        )
    ]
    ratios = []
    for nz in sorted({nz for _, nz in counts}):
        gon, ae = counts.get(("gon", nz)), counts.get(("ae", nz))
        if gon and ae and len(gon) == 1 and len(ae) == 1:
            g, a = next(iter(gon)), next(iter(ae))
            ratios.append({"nz": nz, "gon": g, "ae": a, "ratio": g / a})
    pub = published_parameter_ratio(claims)
    inconsistent = [row for row in rows if len(row["n_params"]) > 1]
    return {"rows": rows, "ratios": ratios, "published": pub, "inconsistent": inconsistent}
