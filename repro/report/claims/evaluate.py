"""The claims: each published claim of ``claims.yaml`` judged by its rule, and ``claims.csv``.

``claims.yaml`` lists every published claim with its source and, next to it, the ``rule`` that
judges it: which measurement to read (a *measure* and its selectors), which decision rule
(:mod:`repro.report.verdicts`), and the tolerance or margin. The registry is validated by
:mod:`repro.report.claims.registry`; the evidence is loaded, and selectors turned into samples
traced to their MLflow runs, by :mod:`repro.report.claims.evidence`. This module applies each
claim's rule to every setting (:func:`evaluate_claims`) and writes ``claims.csv``.

Nothing here knows a result. A claim whose evidence is missing (a stage not run, a dataset not
in the profile, a file deleted) is *not tested* with the reason, not an error.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.config import DATASETS, Params
from repro.io import atomic_write
from repro.report.claims.evidence import Evidence
from repro.report.claims.measures import MEASURES
from repro.report.claims.registry import validate_registry
from repro.report.labels import dataset_label, method_label
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
SPLIT_TEXT = {"train": "training loss", "val": "validation", "test": "held-out test"}
CSV_COLUMNS = (
    "claim_id setting source published ours_mean ours_ci_low ours_ci_high n seeds_needed unit "
    "verdict claim_verdict rule note mlflow_run_ids evidence"
).split()


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


def _setting_part(key: str, value: Any) -> str:
    if key == "dataset":
        return dataset_label(str(value))
    if key == "method":
        return method_label(str(value))
    if key == "train_size":
        return f"{int(value):,} training images"
    if key in ("unit", "split"):
        text = UNIT_TEXT if key == "unit" else SPLIT_TEXT
        return text.get(str(value), str(value))
    return f"{key} {value}"


def _setting_label(setting: Mapping[str, Any]) -> str:
    return ", ".join(_setting_part(k, v) for k, v in setting.items()) or "—"


def _claim_defaults(claim: Mapping[str, Any]) -> dict[str, Any]:
    """A numeric claim's own setting (dataset, nz, split) selects our runs unless the rule says."""
    return {k: claim[k] for k in ("dataset", "nz", "split") if k in claim}


def _scale_gap(sample: Sample, scale: Mapping[str, Any] | None, profile: str) -> str:
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
        f"profile `{profile}` too small for this published number "
        f"({'; '.join(short)}); ours shown, not judged"
    )


def _dataset_gap(sel: Mapping[str, Any], params: Params) -> str:
    dataset = sel.get("dataset")
    if dataset is None or isinstance(dataset, list) or dataset in params.data.datasets:
        return ""
    if dataset not in DATASETS:
        return f"dataset {dataset} is not supported by this package"
    return (
        f"dataset {dataset_label(str(dataset))} not in `data.datasets` of profile "
        f"`{params.profile}`"
    )


def _param(params: Params, dotted: str) -> Any:
    """The value at a dotted params key (``data.datasets``), None where there is none."""
    node: Any = params
    for part in dotted.split("."):
        node = getattr(node, part, None)
    return node


def _settings(rule: Mapping[str, Any], params: Params) -> list[dict[str, Any]]:
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

    def measure(side: Mapping[str, Any] | None) -> Sample:
        sel = {**base, **(side or {})}
        return MEASURES[sel["measure"]](sel, ev)

    if rule["kind"] == "match":
        sample = measure(rule.get("a"))
        target = float(rule.get("target", claim.get("value")))
        reference = "the rule's target" if "target" in rule else "the published"
        verdict = judge_match(
            sample, target, Tolerance(**rule["tolerance"]), c, reference=reference
        )
        if gap := _scale_gap(sample, rule.get("scale"), ev.params.profile):
            verdict = Verdict(NOT_TESTED, gap, verdict.mean, verdict.low, verdict.high, verdict.n)
        return SettingResult(label, verdict, [sample])
    margin = Tolerance(**rule["margin"])
    if rule["kind"] == "less":
        a, b = measure(rule["a"]), measure(rule["b"])
        names = (str(rule.get("a_name", "A")), str(rule.get("b_name", "B")))
        return SettingResult(label, judge_less(a, b, margin, c, names=names), [a, b])
    cand = measure(rule["candidate"])
    rivals = {str(name): measure(sel) for name, sel in rule["rivals"].items()}
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
    """Claims per verdict (every verdict, zeros included)."""
    return _count([r.verdict for r in results])


def _count(verdicts: Sequence[str]) -> dict[str, int]:
    return {v: sum(x == v for x in verdicts) for v in VERDICTS}


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
    return _count(list(per_claim.values()))
