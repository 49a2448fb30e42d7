"""Report section "Parameter count and convergence speed".

Every model trained anywhere in the report with its parameter count, the measured GON/AE
parameter ratio next to the GON paper's "half the parameters" (the abstract), and the
convergence-speed subsection (:mod:`repro.report.controls.convergence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from repro.config import Params, TrainConfig
from repro.names import STUDIES
from repro.report.claims.registry import claims_by_id, published_parameter_ratio
from repro.report.labels import method_label
from repro.report.studies.common import (
    STUDY_CLAIMS,
    rank,
)
from repro.report.study_runs import StudyRun

Row = dict[str, Any]


def cost_section(
    main_runs: Sequence[Any],
    study_runs: Sequence[StudyRun],
    eff_runs: Sequence[Any],
    params: Params,
    claims: Mapping[str, Any],
) -> dict[str, Any]:
    """Parameter counts and ratios, and the published ratio (the convergence subsection is
    :func:`repro.report.controls.convergence.convergence_section`)."""
    rows = parameter_rows(main_runs, study_runs, eff_runs, params.train)
    ratios = _ratios(rows)
    pub = published_parameter_ratio(claims)
    return {
        "status": "run" if rows else "not run",
        "claims": claims_by_id(claims, STUDY_CLAIMS["cost"]),
        "parameter_rows": rows,
        "ratios": ratios,
        "ratio_range": (min(r["ratio"] for r in ratios), max(r["ratio"] for r in ratios))
        if ratios
        else None,
        "published": pub,
    }


def parameter_rows(
    main_runs: Sequence[Any],
    study_runs: Sequence[StudyRun],
    eff_runs: Sequence[Any],
    train: TrainConfig,
) -> list[Row]:
    """One row per distinct model configuration trained anywhere, with its parameter count;
    ``train`` gives the main runs' GON steps and the rows' method order."""
    gon_steps = train.gon_steps
    rows: dict[tuple, Row] = {}

    def add(row: Row, n: Any, n_dec: Any) -> None:
        entry = rows.setdefault(
            tuple(row.values()), row | {"n_params": set(), "n_params_decoder": set()}
        )
        if n is not None:
            entry["n_params"].add(int(n))
        if n_dec is not None:
            entry["n_params_decoder"].add(int(n_dec))

    for r in main_runs:
        add(_main_row(r, gon_steps), r.metrics.get("n_params"), None)
    for r in study_runs:
        if r.ok:
            add(_study_row(r), r.record.get("n_params"), r.record.get("n_params_decoder"))
    for r in eff_runs:
        add(_efficiency_row(r), r.metrics.get("n_params"), None)
    source_order = ["main runs", *(f"{s} study" for s in STUDIES), "data efficiency"]
    method_order = list(dict.fromkeys([*train.methods, "gon"]))

    def key(row: Row) -> tuple:
        return (
            rank(row["source"], source_order),
            rank(row["method"], method_order),
            -1 if row["nz"] is None else row["nz"],
            str(row["activation"]),
            row["steps"] or 0,
        )

    return [
        row
        | {
            "method_label": method_label(row["method"]),
            "n_params": sorted(row["n_params"]),
            "n_params_decoder": sorted(row["n_params_decoder"]),
        }
        for row in sorted(rows.values(), key=key)
    ]


def _main_row(r: Any, gon_steps: int) -> Row:
    return {
        "source": "main runs",
        "method": r.method,
        "architecture": "conv",
        "nz": int(r.nz),
        "activation": r.metrics.get("activation"),
        "steps": gon_steps if r.method == "gon" else None,
    }


def _study_row(r: StudyRun) -> Row:
    return {
        "source": f"{r.study} study",
        "method": r.method,
        "architecture": "conv",
        "nz": int(r.record["nz"]),
        "activation": r.record.get("activation"),
        "steps": int(r.record.get("steps", 1)) if r.method == "gon" else None,
    }


def _efficiency_row(r: Any) -> Row:
    nz = r.metrics.get("nz")
    return {
        "source": "data efficiency",
        "method": r.method,
        "architecture": str(r.metrics.get("architecture", "n/a")),
        "nz": None if nz is None else int(nz),
        "activation": None,
        "steps": None,
    }


def _ratios(rows: Sequence[Row]) -> list[Row]:
    """GON / AE parameters wherever both were trained in the same setting (one count each),
    grouped by the pair of counts so that a ratio shared by many settings is one line."""
    keyed = {(r["source"], r["nz"], r["activation"], r["method"]): r for r in rows}
    groups: dict[tuple[int, int], dict[tuple[str, int], list[str]]] = {}
    for (source, nz, act, method), gon in keyed.items():
        if method != "gon" or gon["steps"] not in (None, 1):
            continue
        ae = keyed.get((source, nz, act, "ae"))
        if not ae or len(gon["n_params"]) != 1 or len(ae["n_params"]) != 1:
            continue
        pair = (gon["n_params"][0], ae["n_params"][0])
        groups.setdefault(pair, {}).setdefault((source, nz), []).append(str(act))
    return [
        {
            "gon": g,
            "ae": a,
            "ratio": g / a,
            "settings": [
                f"{source}, nz {nz}" + (f" ({', '.join(acts)})" if len(acts) > 1 else "")
                for (source, nz), acts in settings.items()
            ],
        }
        for (g, a), settings in groups.items()
    ]
