"""Report section "Linear-encoder control".

A one-step GON's encoder is affine in the image (docs/protocol.md §5, "A one-step GON has an
affine encoder"): GON against the AE with one freely learned linear layer as its encoder and
against the convolutional AE, from the main runs, with the affinity errors each run measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from repro.config import Params
from repro.report.controls import figures as controls_figures
from repro.report.labels import dataset_label, method_label
from repro.report.studies.common import BNModes, Scale, bn_context, finite_ci, main_scale, rank
from repro.report.study_runs import finite_or_none, main_loss
from repro.report.verdicts import holm_contrasts
from repro.stats import MeanCI, PairedDifference

LINEAR_METHODS = ("gon", "ae_linear", "ae")
POINT_COLUMNS = ["method", "seed", "bn_mode", "loss"]  # the figure's points, per dataset × nz


@dataclass(frozen=True)
class EncoderRow:
    """One method's runs at a dataset × nz: held-out test loss (SSE per image) and largest
    affinity error per BN mode (None where no run measured it)."""

    method: str
    method_id: str
    n: int
    test: Mapping[str, MeanCI | None]
    affinity: Mapping[str, float | None]


@dataclass(frozen=True)
class EncoderContrast:
    """GON − another encoder in one BN mode, paired over seeds, with its Holm-adjusted p."""

    other: str  # the other encoder's label
    diff: PairedDifference
    p_holm: float
    verdict: str


@dataclass(frozen=True)
class EncoderItem:
    """One dataset × nz: a row per method that ran, and per BN mode GON − each other encoder
    keyed by the other's method id; apart from these, the figure's points (POINT_COLUMNS,
    dataset, nz)."""

    dataset: str
    dataset_id: str
    nz: int
    rows: tuple[EncoderRow, ...]
    contrasts: Mapping[str, Mapping[str, EncoderContrast]]
    points: pd.DataFrame = field(repr=False, compare=False)

    @property
    def by_id(self) -> dict[str, EncoderRow]:
        return {r.method_id: r for r in self.rows}


@dataclass(frozen=True)
class LinearEncoderSection:
    """The section; the figure's path is set once drawn."""

    bn: BNModes
    scale: Scale
    items: tuple[EncoderItem, ...] = ()
    figure: str | None = None

    @property
    def status(self) -> str:
        return "run" if self.items else "not run"


def linear_encoder_section(
    main_runs: Sequence[Any], params: Params, *, confidence: float, headline_bn: str
) -> LinearEncoderSection:
    """GON vs the freely learned linear encoder vs the conv AE, with affinity errors."""
    bn = bn_context(headline_bn)
    have = {(r.dataset, int(r.nz)) for r in main_runs if r.method == "ae_linear"}
    listed = params.data.datasets
    items = []
    for dataset, nz in sorted(have, key=lambda k: (rank(k[0], listed), k[1])):
        group = {
            m: [r for r in main_runs if (r.dataset, int(r.nz), r.method) == (dataset, nz, m)]
            for m in LINEAR_METHODS
        }
        rows, points = _rows(group, bn.modes, confidence)
        items.append(
            EncoderItem(
                dataset=dataset_label(dataset),
                dataset_id=dataset,
                nz=nz,
                rows=rows,
                contrasts={mode: _contrasts(group, mode, confidence) for mode in bn.modes},
                points=pd.DataFrame(points, columns=POINT_COLUMNS).assign(dataset=dataset, nz=nz),
            )
        )
    return LinearEncoderSection(bn=bn, scale=main_scale(params), items=tuple(items))


def draw_linear_encoder_figure(
    section: LinearEncoderSection, fig_dir: Path, *, confidence: float
) -> LinearEncoderSection:
    """The figure of every item's points, when there are any; the section with its path."""
    frames = [item.points for item in section.items if not item.points.empty]
    if not frames:
        return section
    fig_dir.mkdir(parents=True, exist_ok=True)
    controls_figures.plot_linear_control(
        pd.concat(frames, ignore_index=True),
        fig_dir / "study_linear_encoder.png",
        methods=list(LINEAR_METHODS),
        modes=section.bn.modes,
        confidence=confidence,
    )
    return replace(section, figure="figures/study_linear_encoder.png")


def _rows(
    group: Mapping[str, Sequence[Any]], modes: Sequence[str], confidence: float
) -> tuple[tuple[EncoderRow, ...], list[dict[str, Any]]]:
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
            EncoderRow(
                method=method_label(method),
                method_id=method,
                n=len(g),
                test={
                    mode: finite_ci((main_loss(r, "test", mode) for r in g), confidence)
                    for mode in modes
                },
                affinity=affinity,
            )
        )
        points += [
            {"method": method, "seed": int(r.seed), "bn_mode": mode, "loss": v}
            for r in g
            for mode in modes
            if (v := main_loss(r, "test", mode)) is not None
        ]
    return tuple(rows), points


def _contrasts(
    group: Mapping[str, Sequence[Any]], mode: str, confidence: float
) -> dict[str, EncoderContrast]:
    """GON − each other encoder in one BN mode, paired over seeds, Holm-adjusted together."""
    seeds = {
        m: {int(r.seed): v for r in group[m] if (v := main_loss(r, "test", mode)) is not None}
        for m in LINEAR_METHODS
    }
    return {
        c.other: EncoderContrast(
            other=method_label(c.other), diff=c.difference, p_holm=c.p_holm, verdict=c.verdict
        )
        for c in holm_contrasts(seeds, "gon", confidence)
    }
