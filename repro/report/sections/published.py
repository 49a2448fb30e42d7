"""The published-numbers and parameter-count sections.

Table 1 of the reproducibility report and the independent Julia reproduction (both in
``claims.yaml``, with their sources) next to our numbers at matching dataset and nz, and the
models' parameter counts next to the published GON/AE ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from repro.report.claims.registry import published_parameter_ratio
from repro.report.formatting import published_text
from repro.report.labels import dataset_label, method_label
from repro.report.loaders import Run
from repro.report.sections.results import ci_of
from repro.stats import MeanCI


@dataclass(frozen=True)
class OursCell:
    """Our number next to a published one: the interval over seeds, or why there is none."""

    ci: MeanCI | None
    reason: str | None


@dataclass(frozen=True)
class Table1Row:
    """A row of Table 1 of the reproducibility report (GON validation loss) and ours per
    BatchNorm mode."""

    claim: Mapping[str, Any]  # the claim in claims.yaml
    dataset: str  # its label
    published: str  # the published value as printed in the source
    ours: Mapping[str, OursCell]  # by BatchNorm mode


@dataclass(frozen=True)
class JuliaRow:
    """A row of the Julia reproduction's table (GON and AE test losses) and ours per BatchNorm
    mode."""

    claim: Mapping[str, Any]  # the GON claim in claims.yaml
    dataset: str
    nz: int
    gon_published: str
    ae_published: str  # "not available" when claims.yaml has no AE twin
    ours_gon: Mapping[str, OursCell]
    ours_ae: Mapping[str, OursCell]


@dataclass(frozen=True)
class PublishedSection:
    """Table 1 and the Julia reproduction, with their sources."""

    table1: tuple[Table1Row, ...]
    table1_source: str  # the reproducibility report's citation
    julia: tuple[JuliaRow, ...]
    julia_source: Mapping[str, Any]  # the Julia reproduction's source (cite, url, commit)

    @property
    def table1_unit(self) -> str | None:
        """The unit Table 1 states (its first claim's)."""
        return self.table1[0].claim["unit"] if self.table1 else None


@dataclass(frozen=True)
class _Ours:
    """Where our numbers come from: the summarised main runs and which datasets ran."""

    results: pd.DataFrame
    datasets_run: set[str]
    datasets_listed: set[str]
    bn_modes: Sequence[str]

    def cells(self, dataset: str, nz: int, method: str, split: str) -> dict[str, OursCell]:
        """Our matching number per BatchNorm mode, or an explicit reason why there is none."""
        if dataset not in self.datasets_listed and dataset not in self.datasets_run:
            return {m: OursCell(None, "dataset not in this study") for m in self.bn_modes}
        if dataset not in self.datasets_run:
            return {m: OursCell(None, "dataset not run in this profile") for m in self.bn_modes}
        out = {}
        for mode in self.bn_modes:
            ci = ci_of(
                self.results,
                "sse_per_image",
                dataset=dataset,
                method=method,
                nz=nz,
                bn_mode=mode,
                split=split,
            )
            reason = "no main run at this nz in this profile" if ci is None else None
            out[mode] = OursCell(ci, reason)
        return out


def published_section(
    claims: Mapping[str, Any],
    results: pd.DataFrame,
    *,
    datasets_run: set[str],
    datasets_listed: set[str],
    bn_modes: Sequence[str],
) -> PublishedSection:
    """Table 1 and the Julia reproduction next to our numbers at matching (dataset, nz)."""
    items = claims["claims"]
    ours = _Ours(results, datasets_run, datasets_listed, bn_modes)
    table1 = tuple(
        Table1Row(
            claim=c,
            dataset=dataset_label(c["dataset"]),
            published=published_text(c),
            ours=ours.cells(c["dataset"], int(c["nz"]), "gon", c["split"]),
        )
        for c in items
        if c["id"].startswith("repro-table1-")
    )
    julia = []
    for c in items:
        if not c["id"].startswith("julia-test-"):
            continue
        ae_id = c["id"].replace("julia-test-", "julia-ae-test-")
        ae = next((a for a in items if a["id"] == ae_id), None)
        julia.append(
            JuliaRow(
                claim=c,
                dataset=dataset_label(c["dataset"]),
                nz=c["nz"],
                gon_published=published_text(c),
                ae_published=published_text(ae) if ae else "not available",
                ours_gon=ours.cells(c["dataset"], int(c["nz"]), "gon", "test"),
                ours_ae=ours.cells(c["dataset"], int(c["nz"]), "ae", "test"),
            )
        )
    sources = claims["sources"]
    return PublishedSection(
        table1=table1,
        table1_source=sources["repro_report"]["cite"],
        julia=tuple(julia),
        julia_source=sources["julia_repro"],
    )


@dataclass(frozen=True)
class ParameterRow:
    """The parameter counts the runs of one method at one nz report (more than one: a warning)."""

    method: str  # its label
    nz: int
    n_params: tuple[int, ...]  # sorted


@dataclass(frozen=True)
class ParameterRatio:
    """GON's parameters against the AE's at one nz."""

    nz: int
    gon: int
    ae: int

    @property
    def ratio(self) -> float:
        return self.gon / self.ae


@dataclass(frozen=True)
class ParametersSection:
    """Our parameter counts, their GON/AE ratios, and the published comparison point
    (:func:`~repro.report.claims.registry.published_parameter_ratio`; None when not in
    claims.yaml)."""

    rows: tuple[ParameterRow, ...]
    ratios: tuple[ParameterRatio, ...]
    published: Mapping[str, Any] | None

    @property
    def inconsistent(self) -> tuple[ParameterRow, ...]:
        """Rows whose runs report different parameter counts."""
        return tuple(row for row in self.rows if len(row.n_params) > 1)


def parameters_section(
    runs: Sequence[Run], claims: Mapping[str, Any], methods: Sequence[str]
) -> ParametersSection:
    """n_params per method and nz (from metrics), the GON/AE ratio, and the published counts."""
    counts: dict[tuple[str, int], set[int]] = {}
    for r in runs:
        if "n_params" in r.metrics:
            counts.setdefault((r.method, r.nz), set()).add(int(r.metrics["n_params"]))
    order = {m: i for i, m in enumerate(methods)}
    rows = tuple(
        ParameterRow(method_label(m), nz, tuple(sorted(v)))
        for (m, nz), v in sorted(
            counts.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])
        )
    )
    ratios = []
    for nz in sorted({nz for _, nz in counts}):
        gon, ae = counts.get(("gon", nz)), counts.get(("ae", nz))
        if gon and ae and len(gon) == 1 and len(ae) == 1:
            ratios.append(ParameterRatio(nz, next(iter(gon)), next(iter(ae))))
    return ParametersSection(rows, tuple(ratios), published_parameter_ratio(claims))
