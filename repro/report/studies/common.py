"""Helpers every ablation-study and control section shares: ordering, intervals, the BatchNorm
modes, the training scale line, the claims a section quotes, per-seed values to pair, and the
study sections' figures.

Each section's context is a plain dict (the template ``studies.md.j2`` and the tests read it as
one); the pieces built here are dicts too. A study section with a figure comes as a
:class:`StudySection`: the context and, apart from it, the data its figure is drawn from.
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


def bn_context(headline_bn: str) -> dict[str, Any]:
    """The BatchNorm modes a section shows, with their labels (``bn_note`` in the template)."""
    modes = modes_headline_first(headline_bn)
    return {
        "modes": modes,
        "labels": {m: bn_label(m) for m in modes},
        "headline": headline_bn,
        "headline_label": bn_label(headline_bn),
        "other": modes[1:],
    }


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


def study_scale(params: Params, study: str) -> dict[str, Any]:
    """Training scale of one study's runs, from params (what the reduced-scale label says).

    ``studies.lr`` (when set) replaces ``train.lr`` in the studies and ``studies.nz`` sets the
    latent size of the activation and multistep studies; both are stated when present.
    """
    s = params.studies
    seeds = s.latent.seeds if study == "latent" and s.latent.seeds else s.seeds
    return _scale(
        params,
        images=s.train_images,
        epochs=s.epochs,
        seeds=seeds,
        test_images=s.test_images,
        lr=s.lr if s.lr is not None else params.train.lr,
        nz=None if study == "latent" else s.nz,
    )


def main_scale(params: Params) -> dict[str, Any]:
    """Training scale of the main runs (the controls' sections)."""
    t = params.train
    return _scale(
        params,
        images=t.train_images,
        epochs=t.epochs,
        seeds=t.seeds,
        test_images=None,
        lr=t.lr,
        nz=None,
    )


def _scale(
    params: Params,
    *,
    images: int,
    epochs: int,
    seeds: Sequence[int],
    test_images: int | None,
    lr: float,
    nz: int | None,
) -> dict[str, Any]:
    batch, main_lr = params.train.batch_size, params.train.lr
    return {
        "profile": params.profile,
        "reduced": params.profile != "paper",
        "train_images": images,
        "epochs": epochs,
        "batch_size": batch,
        "steps": images // batch * epochs if images and epochs else None,
        "seeds": list(seeds),
        "test_images": test_images,
        "lr": lr,
        "main_lr": main_lr,
        "lr_differs": lr != main_lr,
        "nz": nz,
    }


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
