"""Every measure a claim rule may name (:data:`MEASURES`), and those of the studies beyond the
main comparison: GFE data efficiency, convergence, the decoder-gradient benchmark, the encoding
study, and the variational and implicit models. The main runs' measures (losses, parameter
counts, steps to a loss level) live with the evidence they read, in :mod:`repro.report.claims.evidence`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from repro.report.claims.evidence import (
    ClaimsError,
    Evidence,
    _describe,
    _run_id,
    _scale,
    _selected,
    measure_loss,
    measure_n_params,
    measure_param_ratio,
    measure_steps_to_threshold,
)
from repro.report.loaders import by_seed
from repro.report.study_runs import finite_or_none
from repro.report.verdicts import Sample


def measure_efficiency_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Final held-out loss of the data-efficiency runs (study loss or SSE per image)."""
    runs = [
        r
        for r in ev.efficiency
        if _selected(sel, dataset=r.dataset, method=r.method, train_size=r.train_size)
    ]
    unit = str(sel.get("unit", "study"))
    values, ids = {}, []
    for r in runs:
        key = f"test_{r.metrics.get('loss', 'sse')}" if unit == "study" else f"test_{unit}"
        if (v := finite_or_none(r.final(key))) is not None:
            values[r.seed] = v
            ids.append(_run_id(r.metrics))
    return Sample(
        values=values,
        run_ids=tuple(i for i in ids if i),
        files=tuple(ev.rel(r.path / "metrics.json") for r in runs),
        missing="" if values else f"no data-efficiency run ({_describe(sel)}) in runs/efficiency/",
    )


def measure_flow_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Per-image latent loss of one flow at the convergence study's final iteration."""
    item = next((i for i in ev.convergence if _selected(sel, dataset=i.dataset)), None)
    if item is None:
        return Sample(
            missing=f"convergence study not run for {sel.get('dataset')} (runs/convergence/)"
        )
    curves, summary = item.curves, item.summary
    where = f"runs/convergence/{item.dataset}/curves.csv"
    if curves is None:
        return Sample(missing=f"{where} is absent (pull it from the DVC cache)")
    iteration = int(sel.get("iteration", summary.get("iterations", 0)))
    rows = curves[(curves["flow"] == sel.get("flow")) & (curves["iteration"] == iteration)]
    if rows.empty:
        return Sample(missing=f"flow {sel.get('flow')} has no iteration {iteration} in {where}")
    return Sample(
        values={int(i): float(v) for i, v in zip(rows["image"], rows["loss"], strict=True)},
        run_ids=tuple(x for x in [_run_id(summary)] if x),
        files=(where,),
    )


def measure_bench(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """One field of one mode of the decoder-gradient benchmark (a single, repeatable measurement)."""
    if ev.bench is None:
        return Sample(missing="reports/bench_gfe_gradients.json is absent (benchmark not run)")
    for row in ev.bench.results:
        if (
            row.mode == sel.get("mode")
            and (v := finite_or_none(getattr(row, str(sel.get("field")), None))) is not None
        ):
            return Sample(
                values={"bench": v}, files=("reports/bench_gfe_gradients.json",), deterministic=True
            )
    return Sample(missing=f"benchmark has no {sel.get('field')} for mode {sel.get('mode')}")


def measure_encoding(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """One field (``field``: gap_loss, own_loss, refined_loss, random_start_loss) of the encoding
    study's rows for ``method``, by seed (repro.encoding)."""
    where = "runs/encoding/<dataset>/summary.json"
    if ev.encoding is None:
        return Sample(missing=f"the encoding study was not run ({where})")
    key = str(sel.get("field"))
    values = {
        int(r["seed"]): float(r[key])
        for r in ev.encoding.rows
        if _selected(sel, method=r["method"], dataset=ev.encoding.dataset) and key in r
    }
    return Sample(
        values=values,
        run_ids=tuple(x for x in [ev.encoding.mlflow_run_id] if x),
        files=(f"runs/encoding/{ev.encoding.dataset}/summary.json",),
        missing="" if values else f"no {key} for {_describe(sel)} in {where}",
    )


def measure_model_field(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """One field (``field``: a dotted path such as ``test.neg_elbo``) of the variational or the
    implicit study's models (``study``), for ``method`` (and ``dataset``, ``resolution``), by
    seed (repro/records.py: VariationalMetrics, ImplicitMetrics)."""
    study, key = str(sel.get("study")), str(sel.get("field"))
    runs = {"variational": ev.variational, "implicit": ev.implicit}.get(study)
    if runs is None:
        raise ClaimsError(f"measure model_field: unknown study {study!r}")
    chosen = [
        r
        for r in runs
        if _selected(
            sel,
            method=r.record.method,
            dataset=r.record.dataset,
            resolution=getattr(r.record, "resolution", None),
        )
        and r.field(key) is not None
    ]
    return Sample(
        values=by_seed(chosen, key),
        scale=_scale(r.record.to_dict() for r in chosen),
        run_ids=tuple(i for r in chosen if (i := r.record.mlflow_run_id)),
        files=tuple(ev.rel(r.path / "metrics.json") for r in chosen),
        missing="" if chosen else f"no {key} for {_describe(sel)} in runs/{study}/",
    )


MEASURES: dict[str, Callable[[Mapping[str, Any], Evidence], Sample]] = {
    "loss": measure_loss,
    "n_params": measure_n_params,
    "param_ratio": measure_param_ratio,
    "steps_to_threshold": measure_steps_to_threshold,
    "efficiency_loss": measure_efficiency_loss,
    "flow_loss": measure_flow_loss,
    "bench": measure_bench,
    "encoding": measure_encoding,
    "model_field": measure_model_field,
}
