"""The claims registry, the measurements behind each claim, and the verdicts they give.

``claims.yaml`` lists every published claim with its source and, next to it, the ``rule`` that
judges it: which measurement to read (a *measure* and its selectors), which decision rule
(:mod:`repro.report.verdicts`), and the tolerance or margin. This module

1. validates the registry (:func:`load_registry`): an error names the claim id and the key;
2. reads the evidence the pipeline wrote (:func:`collect_evidence`): main runs, study cells,
   data-efficiency runs, convergence curves, the decoder-gradient benchmark;
3. turns selectors into :class:`~repro.report.verdicts.Sample`\\ s (the ``MEASURES``), each with
   the MLflow run ids and files it came from, so every number can be traced to its run;
4. applies each claim's rule (:func:`evaluate_claims`) and writes ``claims.csv``.

Nothing here knows a result. A claim whose evidence is missing (a stage not run, a dataset not
in the profile, a file deleted) is *not tested* with the reason, not an error.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repro.analysis import time_to_threshold
from repro.io import atomic_write
from repro.report.figures import dataset_label, method_label
from repro.report.loaders import (
    CLAIMS_PATH,
    EfficiencyRun,
    Run,
    load_benchmark,
    load_claims,
    load_convergence,
    load_efficiency_runs,
    load_runs,
)
from repro.report.studies import StudyRun, finite_or_none, load_studies, read_curve
from repro.report.verdicts import (
    NOT_TESTED,
    VERDICTS,
    Sample,
    Tolerance,
    Verdict,
    combine,
    judge_less,
    judge_lowest,
    judge_match,
    not_tested,
)

RULE_KINDS = ("match", "less", "lowest", "not_tested")
STUDY_SOURCES = ("activation", "multistep", "latent")
LOSS_SOURCES = ("main", *STUDY_SOURCES)
UNIT_TEXT = {
    "sse_per_image": "SSE per image",
    "mse_per_pixel": "MSE per pixel",
    "bce": "BCE, mean over pixels",
    "parameters": "parameters",
    "ratio": "ratio",
    "steps": "optimiser steps",
    "seconds": "seconds",
    "cosine": "cosine similarity",
}
CSV_COLUMNS = [
    "claim_id",
    "setting",
    "source",
    "published",
    "ours_mean",
    "ours_ci_low",
    "ours_ci_high",
    "n",
    "seeds_needed",
    "unit",
    "verdict",
    "claim_verdict",
    "rule",
    "note",
    "mlflow_run_ids",
    "evidence",
]


class ClaimsError(ValueError):
    """claims.yaml is malformed; the message names the claim id and the key to fix."""


# --------------------------------------------------------------------------------------------
# Evidence: everything the pipeline wrote, loaded once
# --------------------------------------------------------------------------------------------


@dataclass
class Evidence:
    """What the rules read. A part that is absent is empty, and ``absent`` says why."""

    params: Mapping[str, Any]
    main: list[Run] = field(default_factory=list)
    studies: list[StudyRun] = field(default_factory=list)
    efficiency: list[EfficiencyRun] = field(default_factory=list)
    convergence: list[dict[str, Any]] = field(default_factory=list)
    bench: dict[str, Any] | None = None
    root: Path | None = None

    @property
    def headline_bn(self) -> str:
        return str((self.params.get("evaluate") or {}).get("headline_bn", "batch"))

    @property
    def confidence(self) -> float:
        return float((self.params.get("report") or {}).get("confidence", 0.95))

    def rel(self, path: Path) -> str:
        """A path relative to the repository, never the user's absolute path."""
        try:
            return (
                str(Path(path).resolve().relative_to(self.root.resolve()))
                if self.root
                else str(path)
            )
        except ValueError:
            return Path(path).name


def collect_evidence(runs_dir: Path, out_dir: Path, params: Mapping[str, Any]) -> Evidence:
    """Load every input a rule can read; missing parts stay empty (their claims: not tested)."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    main, _ = load_runs(runs_dir)
    studies, _, _ = load_studies(runs_dir / "studies")
    efficiency, _ = load_efficiency_runs(runs_dir / "efficiency")
    bench, _ = load_benchmark(out_dir)
    return Evidence(
        params=params,
        main=main,
        studies=studies,
        efficiency=efficiency,
        convergence=load_convergence(runs_dir / "convergence"),
        bench=bench,
        root=runs_dir.parent,
    )


# --------------------------------------------------------------------------------------------
# Measures: selectors -> Sample
# --------------------------------------------------------------------------------------------


def _bn(sel: Mapping[str, Any], ev: Evidence) -> str:
    bn = str(sel.get("bn", "headline"))
    return ev.headline_bn if bn == "headline" else bn


def _matches(value: Any, wanted: Any) -> bool:
    """A selector value matches one value or any of a list."""
    if wanted is None:
        return True
    if isinstance(wanted, list):
        return any(_matches(value, w) for w in wanted)
    return str(value) == str(wanted)


def _scale(items: Iterable[tuple[Any, Any]]) -> dict[str, float]:
    """The smallest training scale among the runs behind a number (epochs, training images)."""
    epochs, images = [], []
    for e, n in items:
        if (v := finite_or_none(e)) is not None:
            epochs.append(v)
        if (v := finite_or_none(n)) is not None:
            images.append(v)
    out = {}
    if epochs:
        out["epochs"] = min(epochs)
    if images:
        out["train_images"] = min(images)
    return out


def _describe(sel: Mapping[str, Any]) -> str:
    keep = ("source", "dataset", "method", "nz", "activation", "steps", "split", "train_size")
    return ", ".join(f"{k} {sel[k]}" for k in keep if k in sel)


def _main_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    split, unit, bn = (
        str(sel.get("split", "test")),
        str(sel.get("unit", "sse_per_image")),
        _bn(sel, ev),
    )
    runs = [
        r
        for r in ev.main
        if _matches(r.dataset, sel.get("dataset"))
        and _matches(r.method, sel.get("method"))
        and _matches(r.nz, sel.get("nz"))
    ]
    values, ids, files = {}, [], []
    for r in runs:
        try:
            v = finite_or_none(r.metrics["losses"][bn][split][unit])
        except (KeyError, TypeError):
            v = None
        if v is None:
            continue
        values[(r.nz, r.seed)] = v
        ids.append(str(r.metrics.get("mlflow_run_id") or ""))
        files.append(ev.rel(r.path / "metrics.json"))
    return Sample(
        values=values,
        run_ids=tuple(i for i in ids if i),
        files=tuple(files),
        missing="" if values else f"no main run ({_describe(sel)}) in runs/",
        scale=_scale((r.metrics.get("epochs"), r.metrics.get("train_images")) for r in runs),
    )


def _study_loss(sel: Mapping[str, Any], ev: Evidence, study: str) -> Sample:
    split, unit, bn = (
        str(sel.get("split", "test")),
        str(sel.get("unit", "sse_per_image")),
        _bn(sel, ev),
    )
    runs = [
        r
        for r in ev.studies
        if r.study == study
        and r.ok
        and _matches(r.dataset, sel.get("dataset"))
        and _matches(r.method, sel.get("method"))
        and _matches(r.record.get("nz"), sel.get("nz"))
        and _matches(r.record.get("activation"), sel.get("activation"))
        and _matches(r.record.get("steps"), sel.get("steps"))
    ]
    values, ids, files = {}, [], []
    for r in runs:
        if split == "train":  # the claim's own measure: the final training loss
            if unit != "mse_per_pixel":
                raise ClaimsError("split 'train' is recorded only in unit 'mse_per_pixel'")
            v = r.value("final_train_mse_per_pixel")
        else:
            v = r.loss(split, bn, unit)
        if v is None:
            continue
        values[(r.record.get("nz"), r.seed)] = v
        ids.append(str(r.record.get("mlflow_run_id") or ""))
        files.append(f"runs/studies/{study}/{r.cell}/metrics.json")
    return Sample(
        values=values,
        run_ids=tuple(i for i in ids if i),
        files=tuple(dict.fromkeys(files)),
        missing=""
        if values
        else f"no {study}-study run ({_describe(sel)}) in runs/studies/{study}/",
        scale=_scale((r.record.get("epochs"), r.record.get("train_images")) for r in runs),
    )


def measure_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Held-out (or final training) loss of main or study runs; ``source`` may list fallbacks."""
    sources = sel.get("source", "main")
    reasons = []
    for source in sources if isinstance(sources, list) else [sources]:
        s = _main_loss(sel, ev) if source == "main" else _study_loss(sel, ev, str(source))
        if s.n:
            return s
        reasons.append(s.missing)
    return Sample(missing="; ".join(reasons))


def measure_n_params(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Trainable parameters of a method at an nz, from main and study runs (deterministic)."""
    values, ids = {}, []
    for r in ev.main:
        if _matches(r.method, sel.get("method")) and _matches(r.nz, sel.get("nz")):
            if (v := finite_or_none(r.metrics.get("n_params"))) is not None:
                values[r.name] = v
                ids.append(str(r.metrics.get("mlflow_run_id") or ""))
    for r in ev.studies:
        if _matches(r.method, sel.get("method")) and _matches(r.record.get("nz"), sel.get("nz")):
            if (v := r.value("n_params")) is not None:
                values[r.name] = v
                ids.append(str(r.record.get("mlflow_run_id") or ""))
    return Sample(
        values=values,
        run_ids=tuple(i for i in ids if i),
        deterministic=True,
        missing="" if values else f"no run of {_describe(sel)}",
    )


def measure_param_ratio(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """GON / AE parameter count for every (source, dataset, nz, seed) where both were trained."""
    counts: dict[tuple, dict[str, float]] = {}
    ids: dict[tuple, list[str]] = {}
    for r in ev.main:
        if (v := finite_or_none(r.metrics.get("n_params"))) is not None:
            key = ("main", r.dataset, r.nz, r.seed)
            counts.setdefault(key, {})[r.method] = v
            ids.setdefault(key, []).append(str(r.metrics.get("mlflow_run_id") or ""))
    for r in ev.studies:
        if (v := r.value("n_params")) is not None:
            key = (f"{r.study}/{r.cell}", r.dataset, r.record.get("nz"), r.seed)
            counts.setdefault(key, {})[r.method] = v
            ids.setdefault(key, []).append(str(r.record.get("mlflow_run_id") or ""))
    values = {k: c["gon"] / c["ae"] for k, c in counts.items() if "gon" in c and "ae" in c}
    return Sample(
        values=values,
        run_ids=tuple(dict.fromkeys(i for k in values for i in ids[k] if i)),
        deterministic=True,
        note=f"{len(values)} settings where GON and the AE were both trained",
        missing="" if values else "no setting where both GON and the AE were trained",
    )


def measure_steps_to_threshold(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Steps (or seconds) until a main run's held-out learning curve reaches the convergence threshold.

    The threshold of a dataset × nz is ``report.convergence_threshold`` × the AE's mean final
    curve loss (held-out test subset). A run that never reaches it is counted at its last point (a lower bound on
    its time) and the sample's note says how many were censored.
    """
    factor = float((ev.params.get("report") or {}).get("convergence_threshold", 1.1))
    axis = {"steps": "step", "seconds": "train_seconds"}[str(sel.get("axis", "steps"))]
    values, ids, files, censored = {}, [], [], 0
    runs = [
        r
        for r in ev.main
        if _matches(r.dataset, sel.get("dataset")) and _matches(r.nz, sel.get("nz"))
    ]
    curves = {id(r): c for r in runs if (c := read_curve(r)) is not None}
    for nz in sorted({r.nz for r in runs}):
        ae = [curves[id(r)] for r in runs if r.method == "ae" and r.nz == nz and id(r) in curves]
        if not ae:
            continue
        threshold = factor * float(np.mean([c["test_mse_per_pixel"].iloc[-1] for c in ae]))
        for r in runs:
            if r.nz != nz or id(r) not in curves or not _matches(r.method, sel.get("method")):
                continue
            c = curves[id(r)]
            t = time_to_threshold(c[axis], c["test_mse_per_pixel"], threshold)
            if math.isnan(t):
                censored += 1
                t = float(c[axis].iloc[-1])
            values[(r.nz, r.seed)] = t
            ids.append(str(r.metrics.get("mlflow_run_id") or ""))
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


def measure_efficiency_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Final held-out loss of the data-efficiency runs (study loss or SSE per image)."""
    runs = [
        r
        for r in ev.efficiency
        if _matches(r.dataset, sel.get("dataset"))
        and _matches(r.method, sel.get("method"))
        and _matches(r.train_size, sel.get("train_size"))
    ]
    values, ids = {}, []
    for r in runs:
        unit = str(sel.get("unit", "study"))
        key = f"test_{r.metrics.get('loss', 'sse')}" if unit == "study" else f"test_{unit}"
        if (v := finite_or_none(r.final(key))) is not None:
            values[r.seed] = v
            ids.append(str(r.metrics.get("mlflow_run_id") or ""))
    return Sample(
        values=values,
        run_ids=tuple(i for i in ids if i),
        files=tuple(ev.rel(r.path / "metrics.json") for r in runs),
        missing="" if values else f"no data-efficiency run ({_describe(sel)}) in runs/efficiency/",
    )


def measure_flow_loss(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """Per-image latent loss of one flow at the convergence study's final iteration."""
    for item in ev.convergence:
        if not _matches(item["dataset"], sel.get("dataset")):
            continue
        curves, summary = item.get("curves"), item["summary"]
        where = f"runs/convergence/{item['dataset']}/curves.csv"
        if curves is None:
            return Sample(missing=f"{where} is absent (pull it from the DVC cache)")
        iteration = int(sel.get("iteration", summary.get("iterations", 0)))
        rows = curves[(curves["flow"] == sel.get("flow")) & (curves["iteration"] == iteration)]
        if rows.empty:
            return Sample(missing=f"flow {sel.get('flow')} has no iteration {iteration} in {where}")
        return Sample(
            values={int(i): float(v) for i, v in zip(rows["image"], rows["loss"], strict=True)},
            run_ids=tuple(x for x in [str(summary.get("mlflow_run_id") or "")] if x),
            files=(where,),
        )
    return Sample(missing=f"convergence study not run for {sel.get('dataset')} (runs/convergence/)")


def measure_bench(sel: Mapping[str, Any], ev: Evidence) -> Sample:
    """One field of one mode of the decoder-gradient benchmark (a single, repeatable measurement)."""
    if ev.bench is None:
        return Sample(missing="reports/bench_gfe_gradients.json is absent (benchmark not run)")
    for row in ev.bench.get("results", []):
        if (
            row.get("mode") == sel.get("mode")
            and (v := finite_or_none(row.get(sel.get("field")))) is not None
        ):
            return Sample(
                values={"bench": v}, files=("reports/bench_gfe_gradients.json",), deterministic=True
            )
    return Sample(missing=f"benchmark has no {sel.get('field')} for mode {sel.get('mode')}")


MEASURES: dict[str, Callable[[Mapping[str, Any], Evidence], Sample]] = {
    "loss": measure_loss,
    "n_params": measure_n_params,
    "param_ratio": measure_param_ratio,
    "steps_to_threshold": measure_steps_to_threshold,
    "efficiency_loss": measure_efficiency_loss,
    "flow_loss": measure_flow_loss,
    "bench": measure_bench,
}


# --------------------------------------------------------------------------------------------
# Registry validation
# --------------------------------------------------------------------------------------------


def _need(cond: bool, claim_id: str, key: str, msg: str) -> None:
    if not cond:
        raise ClaimsError(f"claims.yaml: claim {claim_id!r}: `{key}` {msg}")


def _check_selector(sel: Any, claim_id: str, key: str) -> None:
    _need(isinstance(sel, Mapping), claim_id, key, "must be a mapping of selectors")
    _need(
        sel.get("measure") in MEASURES,
        claim_id,
        f"{key}.measure",
        f"must be one of {sorted(MEASURES)}, got {sel.get('measure')!r}",
    )


def _check_tolerance(t: Any, claim_id: str, key: str) -> None:
    _need(isinstance(t, Mapping) and t, claim_id, key, "must map `relative` and/or `absolute`")
    for k, v in t.items():
        _need(k in ("relative", "absolute"), claim_id, f"{key}.{k}", "is not relative/absolute")
        _need(isinstance(v, int | float) and v >= 0, claim_id, f"{key}.{k}", "must be a number ≥ 0")


def validate_registry(registry: Mapping[str, Any]) -> None:
    """Every claim has a known source and a well-formed rule; ids are unique."""
    sources = registry.get("sources") or {}
    seen: set[str] = set()
    for claim in registry.get("claims") or []:
        cid = str(claim.get("id"))
        _need(cid not in seen, cid, "id", "is used twice")
        seen.add(cid)
        _need(claim.get("source") in sources, cid, "source", f"must be one of {sorted(sources)}")
        rule = claim.get("rule")
        _need(isinstance(rule, Mapping), cid, "rule", "is missing (every claim needs a rule)")
        kind = rule.get("kind")
        _need(
            kind in RULE_KINDS, cid, "rule.kind", f"must be one of {list(RULE_KINDS)}, got {kind!r}"
        )
        settings = rule.get("settings", [{}])
        _need(
            isinstance(settings, list) and settings,
            cid,
            "rule.settings",
            "must be a non-empty list",
        )
        if "settings_from" in rule:
            spec = rule["settings_from"]
            _need(
                isinstance(spec, Mapping) and {"key", "param"} <= set(spec),
                cid,
                "rule.settings_from",
                "must map `key` (a selector) and `param` (a dotted params key holding a list)",
            )
        if kind == "not_tested":
            _need(bool(rule.get("reason")), cid, "rule.reason", "must say why it is not tested")
            continue
        where = rule.get("where") or {}
        if kind == "match":
            _check_selector({**where, **(rule.get("a") or {})}, cid, "rule.where")
            target = rule.get("target", claim.get("value"))
            _need(
                isinstance(target, int | float),
                cid,
                "rule.target",
                "is needed when the published value is not a number",
            )
            _check_tolerance(rule.get("tolerance"), cid, "rule.tolerance")
        elif kind == "less":
            for side in ("a", "b"):
                _check_selector({**where, **(rule.get(side) or {})}, cid, f"rule.{side}")
            _check_tolerance(rule.get("margin"), cid, "rule.margin")
        else:  # lowest
            _check_selector({**where, **(rule.get("candidate") or {})}, cid, "rule.candidate")
            rivals = rule.get("rivals")
            _need(isinstance(rivals, Mapping) and rivals, cid, "rule.rivals", "must name ≥ 1 rival")
            for name, sel in rivals.items():
                _check_selector({**where, **(sel or {})}, cid, f"rule.rivals.{name}")
            _check_tolerance(rule.get("margin"), cid, "rule.margin")


def load_registry(path: Path = CLAIMS_PATH) -> dict[str, Any]:
    """claims.yaml, validated (see :func:`validate_registry`)."""
    registry = load_claims(path)
    validate_registry(registry)
    return registry


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class SettingResult:
    """One setting of a claim (e.g. one dataset): the verdict and the samples behind it."""

    setting: str
    verdict: Verdict
    samples: list[Sample]

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(i for s in self.samples for i in s.run_ids))

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(f for s in self.samples for f in s.files))

    @property
    def notes(self) -> list[str]:
        return [s.note for s in self.samples if s.note]


@dataclass
class ClaimResult:
    """A claim, its rule in words, every setting's verdict, and the combined verdict."""

    claim: dict[str, Any]
    source: str
    rule_text: str
    unit: str
    settings: list[SettingResult]
    verdict: str

    @property
    def id(self) -> str:
        return str(self.claim["id"])

    @property
    def published(self) -> str:
        value = self.claim.get("value")
        if isinstance(value, int | float):
            decimals = self.claim.get("decimals")
            return f"{value:,.{decimals}f}" if decimals is not None else f"{value:g}"
        return str(value)

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(i for s in self.settings for i in s.run_ids))

    @property
    def tested(self) -> list[SettingResult]:
        return [s for s in self.settings if s.verdict.verdict != NOT_TESTED]


def _setting_label(setting: Mapping[str, Any]) -> str:
    parts = []
    for k, v in setting.items():
        if k == "dataset":
            parts.append(dataset_label(str(v)))
        elif k == "method":
            parts.append(method_label(str(v)))
        elif k == "nz":
            parts.append(f"nz {v}")
        elif k == "train_size":
            parts.append(f"{int(v):,} training images")
        elif k == "unit":
            parts.append(UNIT_TEXT.get(str(v), str(v)))
        elif k == "split":
            parts.append(
                {"train": "training loss", "val": "validation", "test": "held-out test"}.get(
                    str(v), str(v)
                )
            )
        else:
            parts.append(f"{k} {v}")
    return ", ".join(parts) or "—"


def _claim_defaults(claim: Mapping[str, Any]) -> dict[str, Any]:
    """A numeric claim's own setting (dataset, nz, split) selects our runs unless the rule says."""
    return {k: claim[k] for k in ("dataset", "nz", "split") if k in claim}


def _scale_gap(sample: Sample, scale: Mapping[str, Any] | None, params: Mapping[str, Any]) -> str:
    """Why a number is not comparable with a published one at a larger training scale."""
    if not scale or not sample.n:
        return ""
    short = [
        f"{k.replace('_', ' ')} {sample.scale[k]:,.0f} < {float(v):,.0f}"
        for k, v in scale.items()
        if k in sample.scale and sample.scale[k] < float(v)
    ]
    if not short:
        return ""
    return (
        f"profile `{params.get('profile')}` too small for this published number "
        f"({'; '.join(short)}); ours shown, not judged"
    )


def _dataset_gap(sel: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    listed = (params.get("data") or {}).get("datasets") or []
    dataset = sel.get("dataset")
    if dataset is None or isinstance(dataset, list) or dataset in listed:
        return ""
    from repro.config import DATASETS

    if dataset not in DATASETS:
        return f"dataset {dataset} is not supported by this package"
    return f"dataset {dataset_label(str(dataset))} not in `data.datasets` of profile `{params.get('profile')}`"


def _param(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _settings(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rule's settings, or one per value of a params list (``settings_from``)."""
    if "settings_from" in rule:
        spec = rule["settings_from"]
        values = _param(params, str(spec["param"])) or []
        return [{str(spec["key"]): v} for v in values] or [{}]
    return [dict(s or {}) for s in rule.get("settings", [{}])]


def _judge_setting(
    claim: Mapping[str, Any], rule: Mapping[str, Any], setting: Mapping[str, Any], ev: Evidence
) -> SettingResult:
    label = _setting_label(setting or _claim_defaults(claim))
    base = {**_claim_defaults(claim), **(rule.get("where") or {}), **setting}
    if gap := _dataset_gap(base, ev.params):
        return SettingResult(label, not_tested(gap), [])
    c = ev.confidence
    kind = rule["kind"]
    if kind == "match":
        sel = {**base, **(rule.get("a") or {})}
        sample = MEASURES[sel["measure"]](sel, ev)
        target = float(rule.get("target", claim.get("value")))
        reference = "the rule's target" if "target" in rule else "the published"
        verdict = judge_match(
            sample, target, Tolerance(**rule["tolerance"]), c, reference=reference
        )
        if gap := _scale_gap(sample, rule.get("scale"), ev.params):
            verdict = Verdict(NOT_TESTED, gap, verdict.mean, verdict.low, verdict.high, verdict.n)
        return SettingResult(label, verdict, [sample])
    margin = Tolerance(**rule["margin"])
    if kind == "less":
        a_sel, b_sel = {**base, **rule["a"]}, {**base, **rule["b"]}
        a, b = MEASURES[a_sel["measure"]](a_sel, ev), MEASURES[b_sel["measure"]](b_sel, ev)
        names = (str(rule.get("a_name", "A")), str(rule.get("b_name", "B")))
        return SettingResult(label, judge_less(a, b, margin, c, names=names), [a, b])
    cand_sel = {**base, **rule["candidate"]}
    cand = MEASURES[cand_sel["measure"]](cand_sel, ev)
    rivals = {}
    for name, sel in rule["rivals"].items():
        full = {**base, **(sel or {})}
        rivals[str(name)] = MEASURES[full["measure"]](full, ev)
    name = str(rule.get("candidate_name", "candidate"))
    return SettingResult(
        label, judge_lowest(cand, rivals, margin, c, name=name), [cand, *rivals.values()]
    )


def evaluate_claim(
    claim: Mapping[str, Any], sources: Mapping[str, Any], ev: Evidence
) -> ClaimResult:
    """Apply a claim's rule to every setting and combine the verdicts."""
    rule = claim["rule"]
    source = sources[claim["source"]]["cite"] + (
        f"; {claim['where']}" if claim.get("where") else ""
    )
    if rule["kind"] == "not_tested":
        settings = [SettingResult("—", not_tested(" ".join(str(rule["reason"]).split())), [])]
    else:
        settings = [_judge_setting(claim, rule, s, ev) for s in _settings(rule, ev.params)]
    return ClaimResult(
        claim=dict(claim),
        source=source,
        rule_text=" ".join(
            str(rule.get("text", "none: not testable with this study's measurements")).split()
        ),
        unit=str(rule.get("unit") or claim.get("unit") or ""),
        settings=settings,
        verdict=combine([s.verdict.verdict for s in settings]),
    )


def evaluate_claims(registry: Mapping[str, Any], ev: Evidence) -> list[ClaimResult]:
    """Every claim of the registry, in registry order."""
    validate_registry(registry)
    return [evaluate_claim(c, registry["sources"], ev) for c in registry["claims"]]


def verdict_counts(results: Sequence[ClaimResult]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in results) for v in VERDICTS}


def key_findings(results: Sequence[ClaimResult], k: int = 3) -> list[ClaimResult]:
    """The ``k`` most important *tested* claims: lowest ``priority`` first, then registry order."""
    tested = [r for r in results if r.verdict != NOT_TESTED and r.claim.get("priority") is not None]
    return sorted(tested, key=lambda r: int(r.claim["priority"]))[:k]


def _csv_num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def claims_rows(results: Sequence[ClaimResult]) -> list[dict[str, Any]]:
    """One row per claim × setting (a claim judged on two datasets has two rows)."""
    rows = []
    for r in results:
        for s in r.settings:
            v = s.verdict
            rows.append(
                {
                    "claim_id": r.id,
                    "setting": s.setting,
                    "source": r.source,
                    "published": r.published,
                    "ours_mean": _csv_num(v.mean),
                    "ours_ci_low": _csv_num(v.low),
                    "ours_ci_high": _csv_num(v.high),
                    "n": v.n,
                    "seeds_needed": "" if v.seeds_needed is None else v.seeds_needed,
                    "unit": r.unit,
                    "verdict": v.verdict,
                    "claim_verdict": r.verdict,
                    "rule": r.rule_text,
                    "note": "; ".join([v.reason, *s.notes]),
                    "mlflow_run_ids": " ".join(s.run_ids),
                    "evidence": " ".join(s.files),
                }
            )
    return rows


def write_claims_csv(path: Path, results: Sequence[ClaimResult]) -> Path:
    with atomic_write(path, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(claims_rows(results))
    return path


def claims_csv_counts(path: Path) -> dict[str, int]:
    """Claims per verdict read back from claims.csv (for tracking: one metric per verdict)."""
    with open(path, encoding="utf-8", newline="") as fh:
        per_claim = {row["claim_id"]: row["claim_verdict"] for row in csv.DictReader(fh)}
    return {v: sum(x == v for x in per_claim.values()) for v in VERDICTS}
