"""Helpers every ablation-study and control section shares: ordering, intervals, the BatchNorm
modes, the training scale line, the claims a section quotes, per-seed values to pair, and the
study sections' figures.

Each section is a frozen dataclass the template ``studies.md.j2`` lays out; the parts the
sections share are typed here: the training scale (:class:`Scale`), the BatchNorm modes
(:class:`BNModes`), a failed run (:class:`Failure`), what the activation and multi-step sections
open with (:class:`StudyHead`) and a variant against the study's reference variant
(:class:`VersusReference`). A section with a figure comes as a :class:`StudySection`: the
section and, apart from it, the data its figure is drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pandas as pd

from repro.config import BN_MODES, Params
from repro.report.claims.registry import claims_by_id
from repro.report.labels import bn_label, dataset_label
from repro.report.study_runs import StudyRun, finite_or_none
from repro.report.verdicts import Contrast, ReferenceComparison
from repro.stats import MeanCI, PairedDifference, mean_ci

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+; annotations only (PEP 673)

STUDY_CLAIMS = {
    "activation": ("repro-claim2-elu-best",),
    "multistep": ("repro-extension-two-steps",),
    "cost": ("gon-faster-convergence",),
}
NOT_COMPARED = "not compared"  # no contrast with the reference variant (no seed in common with it)


def rank(value: str, listed: Sequence[str]) -> tuple[int, str]:
    """Sort key: position in the params' list, unlisted values after it by name."""
    return (listed.index(value) if value in listed else len(listed), value)


def finite_ci(values: Iterable[float | None], confidence: float) -> MeanCI | None:
    """Mean and t-interval of the finite values; None when there are none."""
    vals = [v for v in (finite_or_none(x) for x in values) if v is not None]
    return mean_ci(vals, confidence) if vals else None


def finite_mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in (finite_or_none(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def modes_headline_first(headline_bn: str) -> list[str]:
    """The BN modes, the headline one first."""
    return [headline_bn, *(m for m in BN_MODES if m != headline_bn)]


@dataclass(frozen=True)
class BNModes:
    """The BatchNorm modes a section shows, the headline one first (``bn_note`` in the template)."""

    modes: tuple[str, ...]

    @property
    def headline(self) -> str:
        return self.modes[0]

    @property
    def other(self) -> tuple[str, ...]:
        return self.modes[1:]

    @property
    def labels(self) -> dict[str, str]:
        return {m: bn_label(m) for m in self.modes}

    @property
    def headline_label(self) -> str:
        return bn_label(self.headline)


def bn_context(headline_bn: str) -> BNModes:
    """The BatchNorm modes a section shows, ``headline_bn`` first."""
    return BNModes(tuple(modes_headline_first(headline_bn)))


@dataclass(frozen=True)
class Failure:
    """A run that did not finish, listed in its section and never averaged."""

    name: str
    status: str
    error: str  # the first line of its error, "" when it recorded none


def failures(runs: Iterable[StudyRun]) -> tuple[Failure, ...]:
    """The runs that did not finish: name, status, first error line."""
    return tuple(
        Failure(
            name=r.name,
            status=str(r.record.get("status", "unknown")),
            error=str(r.record.get("error", "")).strip().splitlines()[0]
            if r.record.get("error")
            else "",
        )
        for r in runs
        if not r.ok
    )


@dataclass(frozen=True)
class VersusReference:
    """One variant against the study's reference variant (an activation against
    ``studies.activation.reference``, a k against k = 1): the Holm-corrected paired contrast
    of :meth:`repro.report.verdicts.ReferenceComparison.versus`, None when not compared."""

    contrast: Contrast | None

    @property
    def diff(self) -> PairedDifference | None:
        """This variant minus the reference, paired over matched seeds."""
        return self.contrast.difference if self.contrast is not None else None

    @property
    def p_holm(self) -> float | None:
        return self.contrast.p_holm if self.contrast is not None else None

    @property
    def verdict(self) -> str:
        return self.contrast.verdict if self.contrast is not None else NOT_COMPARED


def versus(comp: ReferenceComparison | None, variant: str) -> Contrast | None:
    """``variant`` against the reference of ``comp``; None when there is no comparison or
    ``variant`` has no contrast in it."""
    return comp.versus(variant) if comp is not None else None


# --------------------------------------------------------------------------------------------
# Training scale (the "Reduced scale" line of each section)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """The training scale of a section's runs (``scale_line`` in the template)."""

    profile: str
    train_images: int
    epochs: int
    batch_size: int
    seeds: tuple[int, ...]
    test_images: int | None  # held-out images scored per run, when the study sets them
    lr: float
    main_lr: float  # the main runs' learning rate, named when ``lr`` differs
    nz: int | None  # stated when the study fixes it

    @property
    def reduced(self) -> bool:
        return self.profile != "paper"

    @property
    def steps(self) -> int | None:
        """Optimiser steps per run."""
        if not (self.train_images and self.epochs):
            return None
        return self.train_images // self.batch_size * self.epochs

    @property
    def lr_differs(self) -> bool:
        return self.lr != self.main_lr


def study_scale(params: Params, study: str) -> Scale:
    """Training scale of one study's runs, from params (what the reduced-scale label says).

    ``studies.lr`` (when set) replaces ``train.lr`` in the studies and ``studies.nz`` sets the
    latent size of the activation and multistep studies; both are stated when present.
    """
    s, t = params.studies, params.train
    return Scale(
        profile=params.profile,
        train_images=s.train_images,
        epochs=s.epochs,
        batch_size=t.batch_size,
        seeds=tuple(s.latent.seeds if study == "latent" and s.latent.seeds else s.seeds),
        test_images=s.test_images,
        lr=s.lr if s.lr is not None else t.lr,
        main_lr=t.lr,
        nz=None if study == "latent" else s.nz,
    )


def main_scale(params: Params) -> Scale:
    """Training scale of the main runs (the controls' sections)."""
    t = params.train
    return Scale(
        profile=params.profile,
        train_images=t.train_images,
        epochs=t.epochs,
        batch_size=t.batch_size,
        seeds=tuple(t.seeds),
        test_images=None,
        lr=t.lr,
        main_lr=t.lr,
        nz=None,
    )


def by_seed(runs: Iterable[StudyRun], get: Callable[[StudyRun], float | None]) -> dict[int, float]:
    """``get`` of each finished run that has a value, keyed by seed (for paired tests)."""
    return {r.seed: v for r in runs if r.ok and (v := get(r)) is not None}


# --------------------------------------------------------------------------------------------
# The head of a study section
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StudyHead:
    """What the activation and multi-step sections open with: whether the study ran, the
    published claims it tests, its training scale, dataset and BN modes, and its failed runs;
    ``figure`` is set once the figure is drawn (:func:`with_figure`)."""

    status: str  # "run" or "not run"
    claims: list[dict[str, Any]]
    scale: Scale
    dataset: str
    bn: BNModes
    failures: tuple[Failure, ...]
    figure: str | None = None

    @classmethod
    def of(
        cls,
        study: str,
        mine: Sequence[StudyRun],
        params: Params,
        claims: Mapping[str, Any],
        bn: BNModes,
        **fields: Any,
    ) -> Self:
        """The section of ``study`` from its runs ``mine``; ``fields`` are the subclass's own."""
        return cls(
            status="run" if mine else "not run",
            claims=claims_by_id(claims, STUDY_CLAIMS[study]),
            scale=study_scale(params, study),
            dataset=dataset_label(params.studies.dataset),
            bn=bn,
            failures=failures(mine),
            **fields,
        )


def runs_of(study: str, runs: Iterable[StudyRun]) -> list[StudyRun]:
    """The runs of ``study``."""
    return [r for r in runs if r.study == study]


# --------------------------------------------------------------------------------------------
# A study section and its figure
# --------------------------------------------------------------------------------------------


C = TypeVar("C")


@dataclass(frozen=True)
class StudySection(Generic[C]):
    """A section with a figure: the section the template lays out (``context``), and apart
    from it the data of its figure.

    ``plot(points, path)`` draws the figure (a function of :mod:`repro.report.studies.figures`
    with the section's settings bound); no ``plot``, or no points, means no figure.
    """

    context: C
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    plot: Callable[[pd.DataFrame, Path], Any] | None = None


def with_figure(section: StudySection[C], fig_dir: Path, name: str) -> C:
    """The section, with ``figure`` the path of ``study_<name>.png`` once drawn."""
    if section.plot is None or section.points.empty:
        return section.context
    fig_dir.mkdir(parents=True, exist_ok=True)
    section.plot(section.points, fig_dir / f"study_{name}.png")
    figure = f"figures/study_{name}.png"
    return replace(section.context, figure=figure)
