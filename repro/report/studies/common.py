"""Helpers every ablation-study and control section shares: ordering, intervals, the BatchNorm
modes, the training scale line, the claims a section quotes, per-seed values to pair, and the
study sections' figures.

Each section's context is a dict the template ``studies.md.j2`` lays out; the parts every
section shares are typed here (:class:`Scale`, :class:`BNModes`). A study section with a figure
comes as a :class:`StudySection`: the context and, apart from it, the data its figure is drawn
from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from repro.config import BN_MODES, Params
from repro.report.claims.registry import claims_by_id
from repro.report.labels import bn_label, dataset_label
from repro.report.study_runs import StudyRun, finite_or_none
from repro.stats import MeanCI, mean_ci

STUDY_CLAIMS = {
    "activation": ("repro-claim2-elu-best",),
    "multistep": ("repro-extension-two-steps",),
    "cost": ("gon-faster-convergence",),
}


def ordered(values: Iterable[Any], preferred: Sequence[Any]) -> list[Any]:
    """Unique values, those in ``preferred`` first in its order, the rest sorted."""
    seen = set(values)
    first = [v for v in dict.fromkeys(preferred) if v in seen]
    return first + sorted(seen - set(first), key=str)


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


def failures(runs: Iterable[StudyRun]) -> list[dict[str, Any]]:
    """The runs that did not finish, listed (never averaged): name, status, first error line."""
    return [
        {
            "name": r.name,
            "status": r.record.get("status", "unknown"),
            "error": str(r.record.get("error", "")).strip().splitlines()[0]
            if r.record.get("error")
            else "",
        }
        for r in runs
        if not r.ok
    ]


# --------------------------------------------------------------------------------------------
# Training scale (the "Reduced scale" line of each section)
# --------------------------------------------------------------------------------------------


def study_context(
    study: str,
    runs: Sequence[StudyRun],
    params: Params,
    claims: Mapping[str, Any],
    headline_bn: str,
) -> tuple[list[StudyRun], dict[str, Any]]:
    """The runs of ``study`` and the keys every study section of the activation and multi-step
    kind starts with: status, the claims it quotes, scale, dataset, BN modes, failures."""
    mine = [r for r in runs if r.study == study]
    return mine, {
        "status": "run" if mine else "not run",
        "claims": claims_by_id(claims, STUDY_CLAIMS[study]),
        "scale": study_scale(params, study),
        "dataset": dataset_label(params.studies.dataset),
        "bn": bn_context(headline_bn),
        "failures": failures(mine),
        "figure": None,
    }


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
# A study section and its figure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySection:
    """A study section: the template's context, and apart from it the data of its figure.

    ``plot(points, path)`` draws the figure (a function of :mod:`repro.report.studies.figures`
    with the section's settings bound); no ``plot``, or no points, means no figure.
    """

    context: dict[str, Any]
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    plot: Callable[[pd.DataFrame, Path], Any] | None = None


def with_figure(section: StudySection, fig_dir: Path, name: str) -> dict[str, Any]:
    """The section's context, with ``figure`` the path of ``study_<name>.png`` once drawn."""
    if section.plot is None or section.points.empty:
        return section.context
    fig_dir.mkdir(parents=True, exist_ok=True)
    section.plot(section.points, fig_dir / f"study_{name}.png")
    return section.context | {"figure": f"figures/study_{name}.png"}
