"""What the claim rules read: the pipeline's outputs, and the main runs' measures.

:func:`collect_evidence` loads every input once (main runs, study cells, data-efficiency runs,
convergence curves, the decoder-gradient benchmark, the encoding, variational and implicit
studies). Each measure (the registry: :data:`repro.report.claims.measures.MEASURES`) picks the
values a claim's selectors name and returns a :class:`~repro.report.verdicts.Sample` with the
MLflow run ids and files it came from, so every number can be traced to its run. A part that is
absent gives an empty sample whose ``missing`` says why (the claim: *not tested*), not an error.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repro.config import Params
from repro.records import EncodingMetrics
from repro.report.loaders import (
    ConvergenceStudy,
    EfficiencyRun,
    GradientBenchmark,
    ModelRun,
    Run,
    load_benchmark,
    load_convergence,
    load_efficiency_runs,
    load_encoding,
    load_implicit,
    load_runs,
    load_variational,
)
from repro.report.study_runs import (
    MSE,
    SSE,
    StudyRun,
    finite_or_none,
    load_studies,
    main_loss,
    read_curve,
)
from repro.report.verdicts import Sample
from repro.stats import time_to_threshold


class ClaimsError(ValueError):
    """claims.yaml is malformed; the message names the claim id and the key to fix."""


@dataclass
class Evidence:
    """What the rules read; a part the pipeline did not write is empty (its claims: not tested)."""

    params: Params
    main: list[Run] = field(default_factory=list)
    studies: list[StudyRun] = field(default_factory=list)
    efficiency: list[EfficiencyRun] = field(default_factory=list)
    convergence: list[ConvergenceStudy] = field(default_factory=list)
    bench: GradientBenchmark | None = None
    encoding: EncodingMetrics | None = None
    variational: list[ModelRun] = field(default_factory=list)
    implicit: list[ModelRun] = field(default_factory=list)
    root: Path | None = None

    @property
    def headline_bn(self) -> str:
        return self.params.evaluate.headline_bn

    @property
    def confidence(self) -> float:
        return self.params.report.confidence

    def rel(self, path: Path) -> str:
        """A path relative to the repository, never the user's absolute path."""
        if not self.root:
            return str(path)
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return Path(path).name


def collect_evidence(runs_dir: Path, out_dir: Path, params: Params) -> Evidence:
    """Load every input a rule can read; missing parts stay empty (their claims: not tested)."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    return Evidence(
        params=params,
        main=load_runs(runs_dir)[0],
        studies=load_studies(runs_dir / "studies")[0],
        efficiency=load_efficiency_runs(runs_dir / "efficiency")[0],
        bench=load_benchmark(out_dir)[0],
        convergence=load_convergence(runs_dir / "convergence"),
        encoding=load_encoding(runs_dir, params.efficiency.dataset),
        variational=load_variational(runs_dir),
        implicit=load_implicit(runs_dir),
        root=runs_dir.parent,
    )


# --------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------


def _matches(value: Any, wanted: Any) -> bool:
    """A selector value matches one value or any of a list."""
    if wanted is None:
        return True
    if isinstance(wanted, list):
        return any(_matches(value, w) for w in wanted)
    return str(value) == str(wanted)


def _selected(sel: Mapping[str, Any], **fields: Any) -> bool:
    """Every named field matches its selector (an absent selector matches anything)."""
    return all(_matches(v, sel.get(k)) for k, v in fields.items())


def _describe(sel: Mapping[str, Any]) -> str:
    keep = ("source", "dataset", "method", "nz", "activation", "steps", "split", "train_size")
    return ", ".join(f"{k} {sel[k]}" for k in keep if k in sel)


def _run_id(record: Mapping[str, Any]) -> str:
    return str(record.get("mlflow_run_id") or "")


def _scale(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The smallest training scale among the runs behind a number (epochs, training images)."""
    out = {}
    for key in ("epochs", "train_images"):
        found = [v for r in records if (v := finite_or_none(r.get(key))) is not None]
        if found:
            out[key] = min(found)
    return out


# --------------------------------------------------------------------------------------------
# Measures: selectors -> Sample
# --------------------------------------------------------------------------------------------


def _loss_sample(
    rows: Iterable[tuple[Hashable, float | None, Mapping[str, Any], str]],
    records: list[Mapping[str, Any]],
    missing: str,
) -> Sample:
    """The runs that have a value: rows of (pairing key, value or None, record, file)."""
    found = [row for row in rows if row[1] is not None]
    return Sample(
        values={key: v for key, v, _, _ in found},
        run_ids=tuple(i for _, _, rec, _ in found if (i := _run_id(rec))),
        files=tuple(dict.fromkeys(f for *_, f in found)),
        missing="" if found else missing,
        scale=_scale(records),
    )


def _main_loss(sel: Mapping[str, Any], ev: Evidence, split: str, unit: str, bn: str) -> Sample:
    runs = [r for r in ev.main if _selected(sel, dataset=r.dataset, method=r.method, nz=r.nz)]
    rows = (
        ((r.nz, r.seed), main_loss(r, split, bn, unit), r.metrics, ev.rel(r.path / "metrics.json"))
        for r in runs
    )
    return _loss_sample(rows, [r.metrics for r in runs], f"no main run ({_describe(sel)}) in runs/")


def _study_loss(
    sel: Mapping[str, Any], ev: Evidence, split: str, unit: str, bn: str, study: str
) -> Sample:
    runs = [
        r
        for r in ev.studies
        if r.study == study
        and r.ok
        and _selected(
            sel,
            dataset=r.dataset,
            method=r.method,
            nz=r.record.get("nz"),
            activation=r.record.get("activation"),
            steps=r.record.get("steps"),
        )
    ]

    def value(r: StudyRun) -> float | None:
        if split != "train":
            return r.loss(split, bn, unit)
        if unit != MSE:  # the claim's own measure: the final training loss
            raise ClaimsError("split 'train' is recorded only in unit 'mse_per_pixel'")
        return r.value("final_train_mse_per_pixel")

    rows = (
        (
            (r.record.get("nz"), r.seed),
            value(r),
            r.record,
            f"runs/studies/{study}/{r.cell}/metrics.json",
        )
        for r in runs
    )
    missing = f"no {study}-study run ({_describe(sel)}) in runs/studies/{study}/"
    return _loss_sample(rows, [r.record for r in runs], missing)


def measure_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Held-out (or final training) loss of main or study runs; ``source`` may list fallbacks."""
    split, unit = str(sel.get("split", "test")), str(sel.get("unit", SSE))
    bn = str(sel.get("bn", "headline"))
    bn = ev.headline_bn if bn == "headline" else bn
    sources = sel.get("source", "main")
    reasons = []
    for source in sources if isinstance(sources, list) else [sources]:
        if source == "main":
            s = _main_loss(sel, ev, split, unit, bn)
        else:
            s = _study_loss(sel, ev, split, unit, bn, str(source))
        if s.n:
            return s
        reasons.append(s.missing)
    return Sample(missing="; ".join(reasons))


def _parameter_counts(ev: Evidence) -> list[tuple[str, tuple, str, float, Mapping[str, Any]]]:
    """(run name, setting, method, parameter count, record) of every main, then study, run that
    recorded a count; the setting (source, dataset, nz, seed) pairs GON with the AE."""
    main = [
        (r.name, ("main", r.dataset, r.nz, r.seed), r.method, r.metrics.get("n_params"), r.metrics)
        for r in ev.main
    ]
    studies = [
        (
            s.name,
            (f"{s.study}/{s.cell}", s.dataset, s.record.get("nz"), s.seed),
            s.method,
            s.record.get("n_params"),
            s.record,
        )
        for s in ev.studies
    ]
    return [
        (name, key, method, v, rec)
        for name, key, method, n, rec in main + studies
        if (v := finite_or_none(n)) is not None
    ]


def measure_n_params(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Trainable parameters of a method at an nz, from main and study runs (deterministic)."""
    rows = [
        (name, n, rec)
        for name, key, method, n, rec in _parameter_counts(ev)
        if _selected(sel, method=method, nz=key[2])
    ]
    return Sample(
        values={name: n for name, n, _ in rows},
        run_ids=tuple(i for *_, rec in rows if (i := _run_id(rec))),
        deterministic=True,
        missing="" if rows else f"no run of {_describe(sel)}",
    )


def measure_param_ratio(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """GON / AE parameter count for every (source, dataset, nz, seed) where both were trained."""
    counts: dict[tuple, dict[str, float]] = {}
    ids: dict[tuple, list[str]] = {}
    for _, key, method, n, rec in _parameter_counts(ev):
        counts.setdefault(key, {})[method] = n
        ids.setdefault(key, []).append(_run_id(rec))
    values = {k: c["gon"] / c["ae"] for k, c in counts.items() if "gon" in c and "ae" in c}
    return Sample(
        values=values,
        run_ids=tuple(dict.fromkeys(i for k in values for i in ids[k] if i)),
        deterministic=True,
        note=f"{len(values)} settings where GON and the AE were both trained",
        missing="" if values else "no setting where both GON and the AE were trained",
    )


def measure_steps_to_threshold(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Steps (or seconds) until a main run's held-out learning curve reaches the threshold.

    The threshold of a dataset × nz is ``report.convergence_threshold`` × the AE's mean final
    curve loss (held-out test subset). A run that never reaches it is counted at its last point
    (a lower bound on its time) and the sample's note says how many were censored.
    """
    factor = ev.params.report.convergence_threshold
    axis = {"steps": "step", "seconds": "train_seconds"}[str(sel.get("axis", "steps"))]
    values, ids, files, censored = {}, [], [], 0
    runs = [r for r in ev.main if _selected(sel, dataset=r.dataset, nz=r.nz)]
    curves = {id(r): c for r in runs if (c := read_curve(r)) is not None}
    for nz in sorted({r.nz for r in runs}):
        ae = [curves[id(r)] for r in runs if r.method == "ae" and r.nz == nz and id(r) in curves]
        if not ae:
            continue
        threshold = factor * float(np.mean([c["test_mse_per_pixel"].iloc[-1] for c in ae]))
        for r in runs:
            if r.nz != nz or id(r) not in curves or not _selected(sel, method=r.method):
                continue
            c = curves[id(r)]
            t = time_to_threshold(c[axis], c["test_mse_per_pixel"], threshold)
            if math.isnan(t):
                censored += 1
                t = float(c[axis].iloc[-1])
            values[(r.nz, r.seed)] = t
            ids.append(_run_id(r.metrics))
            files.append(ev.rel(r.path / "curve.csv"))
    note = (
        f"{censored} run(s) never reached the threshold ({factor} × the AE's final curve "
        "loss) and count at their last point (a lower bound)"
        if censored
        else ""
    )
    return Sample(
        values=values,
        run_ids=tuple(i for i in ids if i),
        files=tuple(files),
        note=note,
        missing=""
        if values
        else f"no learning curves for {_describe(sel)} (or no AE to set the threshold)",
    )
