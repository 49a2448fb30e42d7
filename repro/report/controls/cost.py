"""Report section "Parameter count and convergence speed".

Every model trained anywhere in the report with its parameter count, the measured GON/AE
parameter ratio next to the GON paper's "half the parameters" (the abstract), and the
convergence-speed subsection (:mod:`repro.report.controls.convergence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repro.config import Params, TrainConfig
from repro.names import STUDIES
from repro.report.claims.registry import claims_by_id, published_parameter_ratio
from repro.report.controls.convergence import ConvergenceSpeed
from repro.report.labels import method_label
from repro.report.studies.common import STUDY_CLAIMS, rank
from repro.report.study_runs import StudyRun


@dataclass(frozen=True)
class ModelSetting:
    """One model configuration trained somewhere in the report: where (``source``: "main runs",
    "<study> study" or "data efficiency"), the method and its architecture, latent size,
    activation and GON steps (None where the source does not set them)."""

    source: str
    method: str
    architecture: str
    nz: int | None
    activation: str | None
    steps: int | None

    @property
    def method_label(self) -> str:
        return method_label(self.method)


@dataclass(frozen=True)
class ParameterRow(ModelSetting):
    """A model setting with the distinct parameter counts its runs recorded (sorted)."""

    n_params: tuple[int, ...]
    n_params_decoder: tuple[int, ...]


@dataclass(frozen=True)
class ParameterRatio:
    """GON / AE parameters for one pair of counts, and the settings where both were trained."""

    gon: int
    ae: int
    settings: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.gon / self.ae


@dataclass(frozen=True)
class CostSection:
    """The section: parameter counts, the measured ratios, the published ratio (claims
    ``gon-half-parameters-*``) and the convergence-speed subsection."""

    claims: list[dict[str, Any]]
    parameter_rows: tuple[ParameterRow, ...]
    ratios: tuple[ParameterRatio, ...]
    published: dict[str, Any] | None
    convergence: ConvergenceSpeed

    @property
    def status(self) -> str:
        return "run" if self.parameter_rows else "not run"

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """Smallest and largest measured GON/AE ratio; None without any."""
        if not self.ratios:
            return None
        values = [r.ratio for r in self.ratios]
        return min(values), max(values)


def cost_section(
    main_runs: Sequence[Any],
    study_runs: Sequence[StudyRun],
    eff_runs: Sequence[Any],
    params: Params,
    claims: Mapping[str, Any],
    *,
    convergence: ConvergenceSpeed,
) -> CostSection:
    """Parameter counts and ratios, the published ratio and ``convergence`` (built by
    :func:`repro.report.controls.convergence.convergence_section`)."""
    rows = parameter_rows(main_runs, study_runs, eff_runs, params.train)
    return CostSection(
        claims=claims_by_id(claims, STUDY_CLAIMS["cost"]),
        parameter_rows=rows,
        ratios=_ratios(rows),
        published=published_parameter_ratio(claims),
        convergence=convergence,
    )


def parameter_rows(
    main_runs: Sequence[Any],
    study_runs: Sequence[StudyRun],
    eff_runs: Sequence[Any],
    train: TrainConfig,
) -> tuple[ParameterRow, ...]:
    """One row per distinct model configuration trained anywhere, with its parameter count;
    ``train`` gives the main runs' GON steps and the rows' method order."""
    counts: dict[ModelSetting, tuple[set[int], set[int]]] = {}

    def add(setting: ModelSetting, n: Any, n_dec: Any) -> None:
        n_params, n_decoder = counts.setdefault(setting, (set(), set()))
        if n is not None:
            n_params.add(int(n))
        if n_dec is not None:
            n_decoder.add(int(n_dec))

    for r in main_runs:
        add(_main_setting(r, train.gon_steps), r.metrics.get("n_params"), None)
    for r in study_runs:
        if r.ok:
            add(_study_setting(r), r.record.get("n_params"), r.record.get("n_params_decoder"))
    for r in eff_runs:
        add(_efficiency_setting(r), r.metrics.get("n_params"), None)
    source_order = ["main runs", *(f"{s} study" for s in STUDIES), "data efficiency"]
    method_order = list(dict.fromkeys([*train.methods, "gon"]))

    def key(s: ModelSetting) -> tuple:
        return (
            rank(s.source, source_order),
            rank(s.method, method_order),
            -1 if s.nz is None else s.nz,
            str(s.activation),
            s.steps or 0,
        )

    return tuple(
        ParameterRow(**vars(s), n_params=tuple(sorted(n)), n_params_decoder=tuple(sorted(d)))
        for s, (n, d) in sorted(counts.items(), key=lambda kv: key(kv[0]))
    )


def _main_setting(r: Any, gon_steps: int) -> ModelSetting:
    return ModelSetting(
        source="main runs",
        method=r.method,
        architecture="conv",
        nz=int(r.nz),
        activation=r.metrics.get("activation"),
        steps=gon_steps if r.method == "gon" else None,
    )


def _study_setting(r: StudyRun) -> ModelSetting:
    return ModelSetting(
        source=f"{r.study} study",
        method=r.method,
        architecture="conv",
        nz=int(r.record["nz"]),
        activation=r.record.get("activation"),
        steps=int(r.record.get("steps", 1)) if r.method == "gon" else None,
    )


def _efficiency_setting(r: Any) -> ModelSetting:
    nz = r.metrics.get("nz")
    return ModelSetting(
        source="data efficiency",
        method=r.method,
        architecture=str(r.metrics.get("architecture", "n/a")),
        nz=None if nz is None else int(nz),
        activation=None,
        steps=None,
    )


def _ratios(rows: Sequence[ParameterRow]) -> tuple[ParameterRatio, ...]:
    """GON / AE parameters wherever both were trained in the same setting (one count each),
    grouped by the pair of counts so that a ratio shared by many settings is one line."""
    keyed = {(r.source, r.nz, r.activation, r.method): r for r in rows}
    groups: dict[tuple[int, int], dict[tuple[str, int | None], list[str]]] = {}
    for (source, nz, act, method), gon in keyed.items():
        if method != "gon" or gon.steps not in (None, 1):
            continue
        ae = keyed.get((source, nz, act, "ae"))
        if not ae or len(gon.n_params) != 1 or len(ae.n_params) != 1:
            continue
        pair = (gon.n_params[0], ae.n_params[0])
        groups.setdefault(pair, {}).setdefault((source, nz), []).append(str(act))
    return tuple(
        ParameterRatio(
            gon=g,
            ae=a,
            settings=tuple(
                f"{source}, nz {nz}" + (f" ({', '.join(acts)})" if len(acts) > 1 else "")
                for (source, nz), acts in settings.items()
            ),
        )
        for (g, a), settings in groups.items()
    )
