"""The ablation studies and the main-run controls of the report: the one entry point
:func:`studies_context` that ``build_report`` calls.

The ablations are those of the reproducibility report (activation function, its claim 2;
latent size, its Table 1; k gradient steps, its extension); the controls come from
docs/protocol.md §5 (a one-step GON's encoder is affine) and the GON paper's abstract
(faster convergence, half the parameters). Five sections the template
``studies.md.j2`` lays out, each built by its own module, plus one line about CIFAR-10:

* ``activation`` — "ELU is best": :mod:`repro.report.studies.activation`.
* ``multistep`` — k gradient steps from the origin: :mod:`repro.report.studies.multistep`.
* ``latent`` — Table 1 (nz = 64, 128, 256): :mod:`repro.report.studies.latent`.
* ``linear_encoder`` — a one-step GON's encoder is affine: GON vs the AE with a freely learned
  linear encoder vs the convolutional AE: :mod:`repro.report.controls.linear_encoder`.
* ``cost`` — parameter counts of every model trained (:mod:`repro.report.controls.cost`) and
  convergence speed (:mod:`repro.report.controls.convergence`).

The records they read are loaded by :mod:`repro.report.study_runs`; the helpers they share are
in :mod:`repro.report.studies.common`; ``studies.csv`` is :mod:`repro.report.studies.table`; the
figures are drawn by :mod:`repro.report.studies.figures` and :mod:`repro.report.controls.figures`.

Nothing here knows a result; every number is read from the files below. A section whose inputs
are absent has status "not run"; a diverged run is listed, never averaged.

Layout read (written by the pipeline)::

    runs/studies/<study>/<cell>/{metrics.json, curves.csv}
    runs/<dataset>/<method>-nz<nz>-s<seed>/{metrics.json, curve.csv}   (main runs)
    runs/efficiency/<dataset>/<run>/metrics.json                          (parameter counts)

Layout written::

    out_dir/studies.csv        one row per study × cell × method × bn_mode × split
    out_dir/figures/study_*.png
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.config import DATASETS, DataConfig, Params
from repro.report.controls.convergence import convergence_section, draw_convergence_figures
from repro.report.controls.cost import CostSection, cost_section
from repro.report.controls.linear_encoder import (
    LinearEncoderSection,
    draw_linear_encoder_figure,
    linear_encoder_section,
)
from repro.report.formatting import ordered
from repro.report.labels import dataset_label
from repro.report.studies.activation import ActivationSection, activation_section
from repro.report.studies.common import with_figure
from repro.report.studies.latent import LatentSection, latent_section
from repro.report.studies.multistep import MultistepSection, multistep_section
from repro.report.studies.table import studies_table, write_studies_csv
from repro.report.study_runs import load_studies

__all__ = ["studies_context"]


@dataclass(frozen=True)
class DatasetsNote:
    """Whether this version of the pipeline can load CIFAR-10, and whether it ran."""

    cifar10_supported: bool
    cifar10_listed: bool  # in ``data.datasets``
    cifar10_ran: bool
    allowed: tuple[str, ...]  # the datasets the pipeline can load, labelled


@dataclass(frozen=True)
class Studies:
    """The sections the template ``studies.md.j2`` lays out, with the figures' paths set."""

    activation: ActivationSection
    multistep: MultistepSection
    latent: LatentSection
    linear_encoder: LinearEncoderSection
    cost: CostSection
    datasets_note: DatasetsNote
    confidence: float


def studies_context(
    runs_dir: Path,
    out_dir: Path,
    *,
    main_runs: Sequence[Any],
    eff_runs: Sequence[Any],
    params: Params,
    claims: Mapping[str, Any],
    confidence: float,
    headline_bn: str,
    datasets_run: Iterable[str],
) -> tuple[Studies, list[str]]:
    """Every study section for the template, studies.csv and the figures; plus warnings.

    ``main_runs`` are :class:`repro.report.loaders.Run` (dataset, method, nz, seed, path,
    metrics, name); ``eff_runs`` anything with ``method`` and ``metrics``.
    """
    runs, curves, warnings = load_studies(Path(runs_dir) / "studies")
    profile = params.profile
    other = sorted({r.name for r in runs if r.record.get("profile") not in (None, profile)})
    if other:
        warnings.append(f"study runs from a profile other than `{profile}`: {', '.join(other)}")
    activation = activation_section(
        runs, curves, params, claims, confidence=confidence, headline_bn=headline_bn
    )
    multistep = multistep_section(
        runs, params, claims, confidence=confidence, headline_bn=headline_bn
    )
    latent = latent_section(
        runs, main_runs, params, claims, confidence=confidence, headline_bn=headline_bn
    )
    linear = linear_encoder_section(
        main_runs, params, confidence=confidence, headline_bn=headline_bn
    )
    convergence = convergence_section(main_runs, params, confidence=confidence)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_studies_csv(
        out_dir / "studies.csv",
        studies_table(runs, confidence=confidence, headline_bn=headline_bn),
    )
    fig_dir = out_dir / "figures"
    methods = ordered({r.method for r in main_runs}, params.train.methods)
    speed = draw_convergence_figures(convergence, fig_dir, methods=methods, confidence=confidence)
    studies = Studies(
        activation=with_figure(activation, fig_dir, "activation"),
        multistep=with_figure(multistep, fig_dir, "multistep"),
        latent=with_figure(latent, fig_dir, "latent"),
        linear_encoder=draw_linear_encoder_figure(linear, fig_dir, confidence=confidence),
        cost=cost_section(main_runs, runs, eff_runs, params, claims, convergence=speed),
        datasets_note=datasets_note(params.data, datasets_run),
        confidence=confidence,
    )
    return studies, warnings


def datasets_note(data: DataConfig, datasets_run: Iterable[str]) -> DatasetsNote:
    """Whether this version of the pipeline can load CIFAR-10, and whether it ran."""
    return DatasetsNote(
        cifar10_supported="cifar10" in DATASETS,
        cifar10_listed="cifar10" in data.datasets,
        cifar10_ran="cifar10" in set(datasets_run),
        allowed=tuple(dataset_label(d) for d in DATASETS),
    )
