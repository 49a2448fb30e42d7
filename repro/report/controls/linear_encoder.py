"""Report section "Linear-encoder control".

A one-step GON's encoder is affine in the image (docs/protocol.md §5, "A one-step GON has an
affine encoder"): GON against the AE with one freely learned linear layer as its encoder and
against the convolutional AE, from the main runs, with the affinity errors each run measured.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from repro.config import Params
from repro.report.controls import figures as controls_figures
from repro.report.labels import dataset_label, method_label
from repro.report.studies.common import StudySection, bn_context, finite_ci, main_scale, rank
from repro.report.study_runs import finite_or_none, main_loss
from repro.report.verdicts import holm_contrasts

LINEAR_METHODS = ("gon", "ae_linear", "ae")


def linear_encoder_section(
    main_runs: Sequence[Any], params: Params, *, confidence: float, headline_bn: str
) -> StudySection:
    """GON vs the freely learned linear encoder vs the conv AE, with affinity errors."""
    bn = bn_context(headline_bn)
    have = {(r.dataset, int(r.nz)) for r in main_runs if r.method == "ae_linear"}
    base: dict[str, Any] = {
        "status": "run" if have else "not run",
        "bn": bn,
        "scale": main_scale(params),
        "items": [],
        "figure": None,
    }
    if not have:
        return StudySection(base)
    listed = params.data.datasets
    items, frames = [], []
    for dataset, nz in sorted(have, key=lambda k: (rank(k[0], listed), k[1])):
        group = {
            m: [r for r in main_runs if (r.dataset, int(r.nz), r.method) == (dataset, nz, m)]
            for m in LINEAR_METHODS
        }
        rows, points = _rows(group, bn.modes, confidence)
        items.append(
            {
                "dataset": dataset_label(dataset),
                "dataset_id": dataset,
                "nz": nz,
                "rows": rows,
                "by_id": {r["method_id"]: r for r in rows},
                "contrasts": {mode: _contrasts(group, mode, confidence) for mode in bn.modes},
            }
        )
        frame = pd.DataFrame(points, columns=["method", "seed", "bn_mode", "loss"])
        frames.append(frame.assign(dataset=dataset, nz=nz))
    frames = [f for f in frames if not f.empty]
    plot = functools.partial(
        controls_figures.plot_linear_control,
        methods=list(LINEAR_METHODS),
        modes=bn.modes,
        confidence=confidence,
    )
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return StudySection(base | {"items": items}, points, plot)


def _rows(
    group: Mapping[str, Sequence[Any]], modes: Sequence[str], confidence: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per method that ran: test loss and largest affinity error per BN mode; the figure's points."""
    rows, points = [], []
    for method in LINEAR_METHODS:
        g = group[method]
        if not g:
            continue
        affinity = {}
        for mode in modes:
            vals = [
                v
                for r in g
                if (v := finite_or_none((r.metrics.get("affinity_error") or {}).get(mode)))
                is not None
            ]
            affinity[mode] = max(vals) if vals else None
        rows.append(
            {
                "method": method_label(method),
                "method_id": method,
                "n": len(g),
                "test": {
                    mode: finite_ci((main_loss(r, "test", mode) for r in g), confidence)
                    for mode in modes
                },
                "affinity": affinity,
            }
        )
        points += [
            {"method": method, "seed": int(r.seed), "bn_mode": mode, "loss": v}
            for r in g
            for mode in modes
            if (v := main_loss(r, "test", mode)) is not None
        ]
    return rows, points


def _contrasts(
    group: Mapping[str, Sequence[Any]], mode: str, confidence: float
) -> dict[str, dict[str, Any]]:
    """GON − each other encoder in one BN mode, paired over seeds, Holm-adjusted together."""
    seeds = {
        m: {int(r.seed): v for r in group[m] if (v := main_loss(r, "test", mode)) is not None}
        for m in LINEAR_METHODS
    }
    return {
        c.other: {
            "diff": c.difference,
            "p_holm": c.p_holm,
            "verdict": c.verdict,
            "other": method_label(c.other),
        }
        for c in holm_contrasts(seeds, "gon", confidence)
    }
