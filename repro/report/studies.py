"""The ablation studies and the main-run controls of the report (issue 6, protocol §5).

Five sections, each a plain dict the template ``studies.md.j2`` lays out, plus one line about
CIFAR-10:

* ``activation`` — "ELU is best" (reproducibility report, claim 2): held-out test loss per
  activation, Holm-corrected paired t-tests against ``studies.activation.reference``
  (:func:`repro.analysis.compare_with_reference`).
* ``multistep`` — k gradient steps from the origin (the report's extension): final training
  loss, held-out loss and the cost (seconds per epoch, autograd graph bytes per step) per k.
* ``latent`` — Table 1 of the reproducibility report (nz = 64, 128, 256): our losses in both
  units next to the published numbers, from the latent study and from main runs at those nz.
* ``linear_encoder`` — a one-step GON's encoder is affine (protocol §5): GON vs the AE with a
  freely learned linear encoder vs the convolutional AE, with the measured affinity errors.
* ``cost`` — parameter counts of every model trained, and convergence speed (steps and seconds
  to reach ``report.convergence_threshold`` × the AE's final held-out test loss on the curve).

Nothing here knows a result; every number is read from the files below. A section whose inputs
are absent has status "not run"; a diverged run is listed, never averaged.

Layout read (written by the pipeline)::

    runs/studies/<study>/<cell>/{metrics.json, curves.csv}
    runs/<dataset>/<method>-nz<nz>-s<seed>/{metrics.json, curve.csv}   (main runs)
    runs/efficiency/<dataset>/<run>/metrics.json                          (parameter counts)

Layout written::

    out_dir/studies.csv        one row per study × cell × method × bn_mode × split
    out_dir/figures/study_*.png

``studies.csv`` is separate from ``results.csv`` because a study row is identified by more than
(dataset, method, nz): the activation and the number of gradient steps too. Its columns are
:data:`STUDIES_CSV_COLUMNS`; ``mean``/``ci_*`` are in SSE per image, the ``mse_per_pixel_*``
columns are summarised from the per-pixel values the runs recorded.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.analysis import (
    ReferenceComparison,
    compare_with_reference,
    holm_adjust,
    time_to_threshold,
)
from repro.config import BN_MODES, DATASETS
from repro.io import atomic_write, read_json
from repro.report import study_figures
from repro.report.figures import bn_label, dataset_label, method_label
from repro.stats import MeanCI, PairedDifference, mean_ci, paired_difference

STUDIES = ("activation", "multistep", "latent")
SPLITS = ("val", "test")
SSE, MSE = "sse_per_image", "mse_per_pixel"
MB = 1024 * 1024
STUDY_CLAIMS = {
    "activation": ("repro-claim2-elu-best",),
    "multistep": ("repro-extension-two-steps",),
    "cost": ("gon-faster-convergence",),
}
CURVE_COLUMNS = ("step", "train_seconds", "test_mse_per_pixel")  # repro.train.CURVE_FIELDS
STUDIES_CSV_COLUMNS = [
    "study",
    "cell",
    "dataset",
    "method",
    "nz",
    "activation",
    "steps",
    "bn_mode",
    "split",
    "headline",
    "n",
    "n_failed",
    "confidence",
    "unit",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "mse_per_pixel_mean",
    "mse_per_pixel_ci_low",
    "mse_per_pixel_ci_high",
]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRun:
    """One method × seed of a study cell: its record from the cell's metrics.json."""

    study: str
    cell: str
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"

    @property
    def method(self) -> str:
        return str(self.record["method"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def dataset(self) -> str:
        return str(self.record["dataset"])

    @property
    def name(self) -> str:
        label = self.record.get("label", self.method)
        return f"{self.study}/{self.cell}/{label}-s{self.seed}"

    def loss(self, split: str, bn: str, unit: str = SSE) -> float | None:
        """Held-out loss; study records nest split first, then BN mode."""
        try:
            return finite_or_none(self.record["losses"][split][bn][unit])
        except (KeyError, TypeError):
            return None

    def value(self, key: str) -> float | None:
        return finite_or_none(self.record.get(key))


def finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def load_studies(studies_dir: Path) -> tuple[list[StudyRun], pd.DataFrame, list[str]]:
    """Every study run and held-out learning curve under ``runs/studies``; none when not run.

    A cell directory without metrics.json (a stage killed before scoring) is a warning, not
    an error, so a partial pipeline still yields a report.
    """
    runs: list[StudyRun] = []
    frames: list[pd.DataFrame] = []
    warnings: list[str] = []
    if not studies_dir.is_dir():
        return runs, pd.DataFrame(), warnings
    for cell_dir in sorted(p for p in studies_dir.glob("*/*") if p.is_dir()):
        study, cell = cell_dir.parent.name, cell_dir.name
        metrics_path = cell_dir / "metrics.json"
        if not metrics_path.is_file():
            warnings.append(f"`studies/{study}/{cell}` has no metrics.json (incomplete): left out")
            continue
        m = read_json(metrics_path)
        # The cell's training scale belongs to each of its runs (claims compare it to the
        # published protocol's).
        scale = {k: m[k] for k in ("epochs", "train_images") if k in m}
        for record in m.get("runs", []):
            runs.append(
                StudyRun(study=str(m.get("study", study)), cell=cell, record={**scale, **record})
            )
        curves_path = cell_dir / "curves.csv"
        if curves_path.is_file():
            c = pd.read_csv(curves_path)
            if not c.empty:
                frames.append(c.assign(study=study, cell=cell, dataset=m.get("dataset")))
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return runs, curves, warnings


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _ordered(values: Iterable[Any], preferred: Sequence[Any]) -> list[Any]:
    """Unique values, those in ``preferred`` first in its order, the rest sorted."""
    seen = set(values)
    first = [v for v in dict.fromkeys(preferred) if v in seen]
    return first + sorted(seen - set(first), key=str)


def _ci(values: Iterable[float | None], confidence: float) -> MeanCI | None:
    """Mean and t-interval of the finite values; None when there are none."""
    vals = [v for v in (finite_or_none(x) for x in values) if v is not None]
    return mean_ci(vals, confidence) if vals else None


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in (finite_or_none(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _modes(headline_bn: str) -> list[str]:
    """The BN modes, the headline one first."""
    return [headline_bn, *(m for m in BN_MODES if m != headline_bn)]


def _rank(value: str, listed: Sequence[str]) -> tuple[int, str]:
    """Sort key: position in the params' list, unlisted values after it by name."""
    return (listed.index(value) if value in listed else len(listed), value)


def _flip(d: PairedDifference) -> PairedDifference:
    """``b − a`` from ``a − b`` (the interval mirrors, the p-value stays)."""
    return PairedDifference(
        mean=-d.mean, low=-d.high, high=-d.low, n=d.n, std=d.std, p_value=d.p_value
    )


def claims_by_id(claims: Mapping[str, Any], ids: Sequence[str]) -> list[dict[str, Any]]:
    """The claims of ``claims.yaml`` with these ids, each with its source's citation."""
    sources = claims["sources"]
    items = {c["id"]: c for c in claims["claims"]}
    return [{**items[i], "cite": sources[items[i]["source"]]["cite"]} for i in ids if i in items]


def published_parameter_ratio(claims: Mapping[str, Any]) -> dict[str, Any] | None:
    """The published GON and AE parameter counts (the "half the parameters" claim), or None."""
    published = {c["id"]: c for c in claims["claims"] if c["id"].startswith("gon-half-parameters-")}
    pub_g, pub_a = published.get("gon-half-parameters-gon"), published.get("gon-half-parameters-ae")
    if not (pub_g and pub_a):
        return None
    return {
        "nz": pub_g.get("nz"),
        "gon": pub_g["value"],
        "ae": pub_a["value"],
        "ratio": pub_g["value"] / pub_a["value"],
        "where": pub_g["where"],
    }


def _failures(runs: Iterable[StudyRun]) -> list[dict[str, Any]]:
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


def _study_scale(params: Mapping[str, Any], study: str) -> dict[str, Any]:
    """Training scale of one study's runs, from params (what the reduced-scale label says).

    ``studies.lr`` (when set) replaces ``train.lr`` in the studies and ``studies.nz`` sets the
    latent size of the activation and multistep studies; both are stated when present.
    """
    s = params.get("studies") or {}
    train = params.get("train") or {}
    seeds = s.get("seeds") or []
    if study == "latent" and (s.get("latent") or {}).get("seeds"):
        seeds = s["latent"]["seeds"]
    nz = None
    if study != "latent":
        nz = s.get("nz", ((params.get("model") or {}).get("nz") or [None])[0])
    lr = s.get("lr") if s.get("lr") is not None else train.get("lr")
    return _scale(
        params,
        images=s.get("train_images"),
        epochs=s.get("epochs"),
        seeds=seeds,
        test_images=s.get("test_images"),
        lr=lr,
        nz=nz,
    )


def _main_scale(params: Mapping[str, Any]) -> dict[str, Any]:
    t = params.get("train") or {}
    return _scale(
        params,
        images=t.get("train_images"),
        epochs=t.get("epochs"),
        seeds=t.get("seeds") or [],
        test_images=None,
        lr=t.get("lr"),
        nz=None,
    )


def _scale(
    params: Mapping[str, Any],
    *,
    images: int | None,
    epochs: int | None,
    seeds: Sequence[int],
    test_images: int | None,
    lr: float | None,
    nz: int | None,
) -> dict[str, Any]:
    batch = (params.get("train") or {}).get("batch_size")
    main_lr = (params.get("train") or {}).get("lr")
    return {
        "profile": params.get("profile"),
        "reduced": params.get("profile") != "paper",
        "train_images": images,
        "epochs": epochs,
        "batch_size": batch,
        "steps": images // batch * epochs if images and batch and epochs else None,
        "seeds": list(seeds),
        "test_images": test_images,
        "lr": lr,
        "main_lr": main_lr,
        "lr_differs": lr is not None and main_lr is not None and lr != main_lr,
        "nz": nz,
    }


def _bn_context(headline_bn: str) -> dict[str, Any]:
    modes = _modes(headline_bn)
    return {
        "modes": modes,
        "labels": {m: bn_label(m) for m in modes},
        "headline": headline_bn,
        "headline_label": bn_label(headline_bn),
        "other": modes[1:],
    }


# --------------------------------------------------------------------------------------------
# A. Activation functions
# --------------------------------------------------------------------------------------------


def _by_seed(runs: Iterable[StudyRun], get: Callable[[StudyRun], float | None]) -> dict[int, float]:
    return {r.seed: v for r in runs if r.ok and (v := get(r)) is not None}


def _comparison(
    values: Mapping[str, Mapping[int, float]], reference: str, confidence: float
) -> ReferenceComparison | None:
    """compare_with_reference when it is defined (the reference and one other variant ran)."""
    values = {k: v for k, v in values.items() if v}
    if reference not in values or len(values) < 2:
        return None
    return compare_with_reference(values, reference, confidence)


def activation_section(
    runs: Sequence[StudyRun],
    curves: pd.DataFrame,
    params: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> dict[str, Any]:
    """Per method × activation: test loss in both BN modes, contrasts with the reference."""
    a = (params.get("studies") or {}).get("activation") or {}
    reference = str(a.get("reference", "elu"))
    bn = _bn_context(headline_bn)
    mine = [r for r in runs if r.study == "activation"]
    base: dict[str, Any] = {
        "status": "run" if mine else "not run",
        "claims": claims_by_id(claims, STUDY_CLAIMS["activation"]),
        "reference": reference,
        "scale": _study_scale(params, "activation"),
        "dataset": dataset_label(str((params.get("studies") or {}).get("dataset", "n/a"))),
        "bn": bn,
        "rows": [],
        "outcomes": [],
        "failures": _failures(mine),
        "figure": None,
    }
    if not mine:
        return base
    acts = _ordered((r.record.get("activation") for r in mine), a.get("activations") or [])
    methods = _ordered((r.method for r in mine), a.get("methods") or [])
    rows, outcomes, points = [], [], []
    for method in methods:
        of_method = [r for r in mine if r.method == method]
        comps = {}
        for mode in bn["modes"]:
            values = {
                act: _by_seed(
                    (r for r in of_method if r.record.get("activation") == act),
                    lambda r, mode=mode: r.loss("test", mode),
                )
                for act in acts
            }
            comps[mode] = _comparison(values, reference, confidence)
            outcomes.append(
                {
                    "method": method_label(method),
                    "method_id": method,
                    "bn_mode": mode,
                    "bn": bn_label(mode),
                    "headline": mode == headline_bn,
                    "comparison": comps[mode],
                    "sentence": comps[mode].sentence(
                        f"held-out test loss ({bn_label(mode)}, SSE per image)"
                    )
                    if comps[mode]
                    else None,
                }
            )
        for act in acts:
            group = [r for r in of_method if r.record.get("activation") == act]
            ok = [r for r in group if r.ok]
            if not group:
                continue
            cells = {}
            for mode in bn["modes"]:
                contrast = None
                comp = comps[mode]
                if comp is not None and act != reference:
                    contrast = next((c for c in comp.contrasts if c.other == act), None)
                cells[mode] = {
                    "ci": _ci((r.loss("test", mode) for r in ok), confidence),
                    # this − reference: positive = higher loss than the reference
                    "diff": _flip(contrast.difference) if contrast else None,
                    "p_holm": contrast.p_holm if contrast else None,
                }
                points += [
                    {
                        "method": method,
                        "activation": act,
                        "seed": r.seed,
                        "bn_mode": mode,
                        "loss": v,
                    }
                    for r in ok
                    if (v := r.loss("test", mode)) is not None
                ]
            rows.append(
                {
                    "method": method_label(method),
                    "activation": act,
                    "reference": act == reference,
                    "n": len(ok),
                    "failed": len(group) - len(ok),
                    "modes": cells,
                }
            )
    headline_gon = next((o for o in outcomes if o["method_id"] == "gon" and o["headline"]), None)
    gon_curves = pd.DataFrame()
    if not curves.empty and {"study", "method", "activation", *CURVE_COLUMNS} <= set(curves):
        gon_curves = curves[(curves["study"] == "activation") & (curves["method"] == "gon")]
    return base | {
        "rows": rows,
        "outcomes": outcomes,
        "headline_outcome": headline_gon,
        "other_outcomes": [o for o in outcomes if o is not headline_gon],
        "_plot": {
            "curves": gon_curves,
            "points": pd.DataFrame(
                points, columns=["method", "activation", "seed", "bn_mode", "loss"]
            ),
            "activations": acts,
            "methods": methods,
        },
    }


# --------------------------------------------------------------------------------------------
# B. Multi-step GON
# --------------------------------------------------------------------------------------------


def _pixels(r: StudyRun) -> float | None:
    """Values per image (pixels × channels): the ratio of the run's own two loss units."""
    for split in SPLITS:
        for mode in BN_MODES:
            sse, mse = r.loss(split, mode, SSE), r.loss(split, mode, MSE)
            if sse is not None and mse:
                return round(sse / mse)
    return None


def _train_sse(r: StudyRun) -> float | None:
    mse, px = r.value("final_train_mse_per_pixel"), _pixels(r)
    return mse * px if mse is not None and px else None


def multistep_section(
    runs: Sequence[StudyRun],
    params: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> dict[str, Any]:
    """Per k: losses and cost; k > 1 against k = 1 (paired over seeds, Holm-corrected)."""
    m = (params.get("studies") or {}).get("multistep") or {}
    bn = _bn_context(headline_bn)
    mine = [r for r in runs if r.study == "multistep"]
    base: dict[str, Any] = {
        "status": "run" if mine else "not run",
        "claims": claims_by_id(claims, STUDY_CLAIMS["multistep"]),
        "scale": _study_scale(params, "multistep"),
        "dataset": dataset_label(str((params.get("studies") or {}).get("dataset", "n/a"))),
        "bn": bn,
        "learn_step_size": bool(m.get("learn_step_size", False)),
        "step_size": m.get("step_size"),
        "rows": [],
        "findings": [],
        "failures": _failures(mine),
        "baseline": None,
        "figure": None,
    }
    if not mine:
        return base
    ks = sorted({int(r.record.get("steps", 1)) for r in mine})
    of_k = {k: [r for r in mine if int(r.record.get("steps", 1)) == k] for k in ks}
    metrics: dict[str, Callable[[StudyRun], float | None]] = {
        "train": _train_sse,
        **{f"test_{mode}": (lambda r, mode=mode: r.loss("test", mode)) for mode in bn["modes"]},
    }
    baseline = 1 if 1 in ks else ks[0]
    comps = {
        key: _comparison({str(k): _by_seed(of_k[k], get) for k in ks}, str(baseline), confidence)
        for key, get in metrics.items()
    }
    rows, points = [], []
    cost: dict[int, dict[str, float | None]] = {}
    for k in ks:
        ok = [r for r in of_k[k] if r.ok]
        learned = [v for r in ok if (v := r.value("learned_step_size")) is not None]
        cost[k] = {
            "seconds_per_epoch": _mean(r.value("seconds_per_epoch") for r in ok),
            "graph_bytes": _mean(r.value("graph_bytes_per_step") for r in ok),
            "cuda_peak_bytes": _mean(r.value("cuda_peak_bytes") for r in ok),
        }
        contrasts = {}
        for key, comp in comps.items():
            c = None
            if comp is not None and k != baseline:
                c = next((x for x in comp.contrasts if x.other == str(k)), None)
            contrasts[key] = {
                "diff": _flip(c.difference) if c else None,  # this k − baseline
                "p_holm": c.p_holm if c else None,
            }
        rows.append(
            {
                "k": k,
                "n": len(ok),
                "failed": len(of_k[k]) - len(ok),
                "train_mse": _ci((r.value("final_train_mse_per_pixel") for r in ok), confidence),
                "train_sse": _ci((_train_sse(r) for r in ok), confidence),
                "test": {
                    mode: _ci((r.loss("test", mode) for r in ok), confidence)
                    for mode in bn["modes"]
                },
                # How far the k steps move the latent: with batch statistics the first step is
                # scaled by 1/sqrt(eps) (protocol section 5), so later steps may barely move it.
                "latent_norm": _ci(
                    (r.loss("test", bn["headline"], "latent_norm") for r in ok), confidence
                ),
                "seconds_per_epoch": _ci((r.value("seconds_per_epoch") for r in ok), confidence),
                "graph_mb": None if cost[k]["graph_bytes"] is None else cost[k]["graph_bytes"] / MB,
                "cuda_peak_mb": None
                if cost[k]["cuda_peak_bytes"] is None
                else cost[k]["cuda_peak_bytes"] / MB,
                "learned_step_size": _ci(learned, confidence),
                "learned_range": (min(learned), max(learned)) if learned else None,
                "contrasts": contrasts,
            }
        )
        for r in ok:
            points.append(
                {
                    "k": k,
                    "seed": r.seed,
                    "train_sse": _train_sse(r),
                    **{f"test_{mode}": r.loss("test", mode) for mode in bn["modes"]},
                    "seconds_per_epoch": r.value("seconds_per_epoch"),
                    "graph_mb": None if (g := r.value("graph_bytes_per_step")) is None else g / MB,
                }
            )

    def ratio(k: int, key: str) -> float | None:
        a, b = cost[k][key], cost[baseline][key]
        return a / b if a is not None and b else None

    findings = []
    for row in rows:
        k = row["k"]
        if k == baseline:
            continue
        verdicts = {}
        for key in metrics:
            c = row["contrasts"][key]
            d, p = c["diff"], c["p_holm"]
            if d is None:
                verdict = "not compared"
            elif p is None or math.isnan(p):
                verdict = "not tested"
            elif p < 0.05:
                verdict = "lower" if d.mean < 0 else "higher"
            else:
                verdict = "not distinguishable"
            verdicts[key] = verdict
        findings.append(
            {
                "k": k,
                "verdict": verdicts,
                "seconds_ratio": ratio(k, "seconds_per_epoch"),
                "graph_ratio": ratio(k, "graph_bytes"),
                "cuda_ratio": ratio(k, "cuda_peak_bytes"),
            }
        )
    head = f"test_{headline_bn}"
    return base | {
        "rows": rows,
        "baseline": baseline,
        "findings": findings,
        "lower_test": [f["k"] for f in findings if f["verdict"][head] == "lower"],
        "higher_test": [f["k"] for f in findings if f["verdict"][head] == "higher"],
        "lower_train": [f["k"] for f in findings if f["verdict"]["train"] == "lower"],
        "higher_train": [f["k"] for f in findings if f["verdict"]["train"] == "higher"],
        "tested": any(f["verdict"][head] not in ("not tested", "not compared") for f in findings),
        "any_cuda": any(row["cuda_peak_mb"] is not None for row in rows),
        "_plot": {"points": pd.DataFrame(points)},
    }


# --------------------------------------------------------------------------------------------
# C. Latent size (Table 1)
# --------------------------------------------------------------------------------------------


def _main_loss(run: Any, split: str, bn: str, unit: str = SSE) -> float | None:
    """Held-out loss of a main run; main metrics nest BN mode first, then split."""
    try:
        return finite_or_none(run.metrics["losses"][bn][split][unit])
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class _Sample:
    """One scored model, from the latent study or the main matrix, in one shape."""

    source: str
    dataset: str
    method: str
    nz: int
    seed: int
    loss: Callable[[str, str, str], float | None]
    name: str


def _published_table1(claims: Mapping[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (str(c["dataset"]), int(c["nz"])): c
        for c in claims["claims"]
        if str(c["id"]).startswith("repro-table1-")
    }


def latent_section(
    runs: Sequence[StudyRun],
    main_runs: Sequence[Any],
    params: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    confidence: float,
    headline_bn: str,
) -> dict[str, Any]:
    """Rows dataset × nz × method × source, with the published Table 1 value next to GON."""
    bn = _bn_context(headline_bn)
    published = _published_table1(claims)
    table1_nz = sorted({nz for _, nz in published})
    study_scale, main_scale = _study_scale(params, "latent"), _main_scale(params)
    sources = {
        "latent study": study_scale,
        "main runs": main_scale,
    }
    samples: list[_Sample] = []
    latent = [r for r in runs if r.study == "latent"]
    for r in latent:
        if r.ok:
            samples.append(
                _Sample(
                    "latent study",
                    r.dataset,
                    r.method,
                    int(r.record["nz"]),
                    r.seed,
                    lambda s, b, u, r=r: r.loss(s, b, u),
                    r.name,
                )
            )
    for run in main_runs:
        if int(run.nz) in table1_nz and run.method in ("gon", "ae", "ae_linear"):
            samples.append(
                _Sample(
                    "main runs",
                    run.dataset,
                    run.method,
                    int(run.nz),
                    int(run.seed),
                    lambda s, b, u, run=run: _main_loss(run, s, b, u),
                    run.name,
                )
            )
    base: dict[str, Any] = {
        "status": "run" if samples else "not run",
        "bn": bn,
        "table1_nz": table1_nz,
        "unit": next((c["unit"] for c in published.values()), None),
        "epochs_published": next((c.get("epochs") for c in published.values()), None),
        "sources": [
            {"name": name, "scale": scale}
            for name, scale in sources.items()
            if any(s.source == name for s in samples)
        ],
        "rows": [],
        "findings": [],
        "failures": _failures(latent),
        "figure": None,
    }
    if not samples:
        return base
    listed = list((params.get("studies") or {}).get("latent", {}).get("datasets") or [])
    datasets = _ordered({s.dataset for s in samples}, listed)
    method_pref = list((params.get("studies") or {}).get("latent", {}).get("methods") or [])
    methods = _ordered({s.method for s in samples}, [*method_pref, "gon", "ae", "ae_linear"])
    rows, points, findings = [], [], []
    for dataset in datasets:
        for nz in sorted({s.nz for s in samples if s.dataset == dataset}):
            for source in sources:
                for method in methods:
                    group = [
                        s
                        for s in samples
                        if (s.dataset, s.nz, s.source, s.method) == (dataset, nz, source, method)
                    ]
                    if not group:
                        continue
                    cells = {
                        mode: {
                            f"{split}_{unit}": _ci(
                                (s.loss(split, mode, unit) for s in group), confidence
                            )
                            for split in SPLITS
                            for unit in (SSE, MSE)
                        }
                        for mode in bn["modes"]
                    }
                    pub = published.get((dataset, nz)) if method == "gon" else None
                    ratio = {}
                    for mode in bn["modes"]:
                        ours = cells[mode]["val_sse_per_image"]
                        ratio[mode] = (
                            ours.mean / float(pub["value"])
                            if pub and ours is not None and float(pub["value"])
                            else None
                        )
                    rows.append(
                        {
                            "dataset": dataset_label(dataset),
                            "dataset_id": dataset,
                            "nz": nz,
                            "method": method_label(method),
                            "method_id": method,
                            "source": source,
                            "n": len(group),
                            "modes": cells,
                            "published": _published_text(pub) if pub else None,
                            "ratio": ratio,
                        }
                    )
                    points += [
                        {
                            "dataset": dataset,
                            "nz": nz,
                            "method": method,
                            "source": source,
                            "seed": s.seed,
                            "loss": v,
                        }
                        for s in group
                        if (v := s.loss("test", headline_bn, SSE)) is not None
                    ]
        findings.extend(_latent_findings(rows, samples, dataset, headline_bn, confidence))
    ratios = [r["ratio"][headline_bn] for r in rows if r["ratio"].get(headline_bn) is not None]
    return base | {
        "rows": rows,
        "findings": findings,
        "ratio_range": (min(ratios), max(ratios)) if ratios else None,
        "_plot": {"points": pd.DataFrame(points), "methods": methods, "datasets": datasets},
    }


def _published_text(claim: Mapping[str, Any]) -> str:
    value = claim["value"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.{int(claim.get('decimals', 2))}f}"
    return str(value)


def _latent_findings(
    rows: Sequence[dict[str, Any]],
    samples: Sequence[_Sample],
    dataset: str,
    headline_bn: str,
    confidence: float,
) -> list[dict[str, Any]]:
    """Per dataset × source: GON vs AE per nz (paired over seeds) and GON's trend in nz."""
    out = []
    for source in dict.fromkeys(r["source"] for r in rows if r["dataset_id"] == dataset):
        mine = [r for r in rows if r["dataset_id"] == dataset and r["source"] == source]
        per_nz = []
        for nz in sorted({r["nz"] for r in mine}):
            seeds = {
                method: {
                    s.seed: v
                    for s in samples
                    if (s.dataset, s.nz, s.source, s.method) == (dataset, nz, source, method)
                    and (v := s.loss("test", headline_bn, SSE)) is not None
                }
                for method in ("gon", "ae")
            }
            common = sorted(set(seeds["gon"]) & set(seeds["ae"]))
            if not common:
                continue
            d = paired_difference(
                [seeds["gon"][s] for s in common], [seeds["ae"][s] for s in common], confidence
            )
            per_nz.append({"nz": nz, "diff": d, "n": len(common), "lower": d.mean < 0})
        gon_val = [
            (r["nz"], r["modes"][headline_bn]["val_sse_per_image"])
            for r in mine
            if r["method_id"] == "gon" and r["modes"][headline_bn]["val_sse_per_image"]
        ]
        means = [ci.mean for _, ci in sorted(gon_val)]
        falls = (
            all(b < a for a, b in zip(means, means[1:], strict=False)) if len(means) > 1 else None
        )
        out.append(
            {
                "dataset": dataset_label(dataset),
                "source": source,
                "per_nz": per_nz,
                "gon_lower_at": [f["nz"] for f in per_nz if f["lower"]],
                "ae_lower_at": [f["nz"] for f in per_nz if not f["lower"]],
                "gon_falls_with_nz": falls,
                "gon_nz": [nz for nz, _ in sorted(gon_val)],
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# D. Linear-encoder control
# --------------------------------------------------------------------------------------------

LINEAR_METHODS = ("gon", "ae_linear", "ae")


def linear_encoder_section(
    main_runs: Sequence[Any], params: Mapping[str, Any], *, confidence: float, headline_bn: str
) -> dict[str, Any]:
    """GON vs the freely learned linear encoder vs the conv AE, with affinity errors."""
    bn = _bn_context(headline_bn)
    have = {(r.dataset, int(r.nz)) for r in main_runs if r.method == "ae_linear"}
    base: dict[str, Any] = {
        "status": "run" if have else "not run",
        "bn": bn,
        "scale": _main_scale(params),
        "items": [],
        "figure": None,
    }
    if not have:
        return base
    listed = list((params.get("data") or {}).get("datasets") or [])
    items = []
    for dataset, nz in sorted(have, key=lambda k: (_rank(k[0], listed), k[1])):
        group = {
            m: [r for r in main_runs if (r.dataset, int(r.nz), r.method) == (dataset, nz, m)]
            for m in LINEAR_METHODS
        }
        rows, points = [], []
        for method in LINEAR_METHODS:
            g = group[method]
            if not g:
                continue
            affinity = {}
            for mode in bn["modes"]:
                vals = [
                    v
                    for r in g
                    if (v := finite_or_none((r.metrics.get("affinity_error") or {}).get(mode)))
                    is not None
                ]
                affinity[mode] = max(vals) if vals else None
            rows.append(
                {
                    "method": method_label(method),
                    "method_id": method,
                    "n": len(g),
                    "test": {
                        mode: _ci((_main_loss(r, "test", mode) for r in g), confidence)
                        for mode in bn["modes"]
                    },
                    "affinity": affinity,
                }
            )
            points += [
                {"method": method, "seed": int(r.seed), "bn_mode": mode, "loss": v}
                for r in g
                for mode in bn["modes"]
                if (v := _main_loss(r, "test", mode)) is not None
            ]
        contrasts = {}
        for mode in bn["modes"]:
            seeds = {
                m: {
                    int(r.seed): v
                    for r in group[m]
                    if (v := _main_loss(r, "test", mode)) is not None
                }
                for m in LINEAR_METHODS
            }
            pairs = []
            for other in ("ae_linear", "ae"):
                common = sorted(set(seeds["gon"]) & set(seeds[other]))
                if common:
                    pairs.append(
                        (
                            other,
                            paired_difference(
                                [seeds["gon"][s] for s in common],
                                [seeds[other][s] for s in common],
                                confidence,
                            ),
                        )
                    )
            adjusted = holm_adjust([d.p_value for _, d in pairs])
            contrasts[mode] = {
                other: {
                    "diff": d,
                    "p_holm": p,
                    "verdict": _verdict(d, p),
                    "other": method_label(other),
                }
                for (other, d), p in zip(pairs, adjusted, strict=True)
            }
        by_id = {r["method_id"]: r for r in rows}
        items.append(
            {
                "dataset": dataset_label(dataset),
                "dataset_id": dataset,
                "nz": nz,
                "rows": rows,
                "by_id": by_id,
                "contrasts": contrasts,
                "_points": pd.DataFrame(points, columns=["method", "seed", "bn_mode", "loss"]),
            }
        )
    return base | {"items": items}


def _verdict(d: PairedDifference, p: float) -> str:
    """'lower' / 'higher' (first minus second, Holm p < 0.05), 'not distinguishable', or
    'not tested' (one seed, or identical differences)."""
    if p is None or math.isnan(p):
        return "not tested"
    if p < 0.05:
        return "lower" if d.mean < 0 else "higher"
    return "not distinguishable"


# --------------------------------------------------------------------------------------------
# E. Parameter counts and convergence speed
# --------------------------------------------------------------------------------------------


def parameter_rows(
    main_runs: Sequence[Any],
    study_runs: Sequence[StudyRun],
    eff_runs: Sequence[Any],
    params: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One row per distinct model configuration trained anywhere, with its parameter count."""
    gon_steps = (params.get("train") or {}).get("gon_steps", 1)
    rows: dict[tuple, dict[str, Any]] = {}

    def add(key: tuple, row: dict[str, Any], n: Any, n_dec: Any) -> None:
        entry = rows.setdefault(key, row | {"n_params": set(), "n_params_decoder": set()})
        if n is not None:
            entry["n_params"].add(int(n))
        if n_dec is not None:
            entry["n_params_decoder"].add(int(n_dec))

    for r in main_runs:
        k = gon_steps if r.method == "gon" else None
        row = {
            "source": "main runs",
            "method": r.method,
            "architecture": "conv",
            "nz": int(r.nz),
            "activation": r.metrics.get("activation"),
            "steps": k,
        }
        add(tuple(row.values()), row, r.metrics.get("n_params"), None)
    for r in study_runs:
        if not r.ok:
            continue
        k = int(r.record.get("steps", 1)) if r.method == "gon" else None
        row = {
            "source": f"{r.study} study",
            "method": r.method,
            "architecture": "conv",
            "nz": int(r.record["nz"]),
            "activation": r.record.get("activation"),
            "steps": k,
        }
        add(tuple(row.values()), row, r.record.get("n_params"), r.record.get("n_params_decoder"))
    for r in eff_runs:
        row = {
            "source": "data efficiency",
            "method": r.method,
            "architecture": str(r.metrics.get("architecture", "n/a")),
            "nz": _int_or_none(r.metrics.get("nz")),
            "activation": None,
            "steps": None,
        }
        add(tuple(row.values()), row, r.metrics.get("n_params"), None)
    source_order = ["main runs", *(f"{s} study" for s in STUDIES), "data efficiency"]
    method_order = list(dict.fromkeys([*(params.get("train") or {}).get("methods", []), "gon"]))

    def key(row: dict[str, Any]) -> tuple:
        return (
            _rank(row["source"], source_order),
            _rank(row["method"], method_order),
            -1 if row["nz"] is None else row["nz"],
            str(row["activation"]),
            row["steps"] or 0,
        )

    return [
        row
        | {
            "method_label": method_label(row["method"]),
            "n_params": sorted(row["n_params"]),
            "n_params_decoder": sorted(row["n_params_decoder"]),
        }
        for row in sorted(rows.values(), key=key)
    ]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """GON / AE parameters wherever both were trained in the same setting (one count each),
    grouped by the pair of counts so that a ratio shared by many settings is one line."""
    keyed = {(r["source"], r["nz"], r["activation"], r["method"]): r for r in rows}
    groups: dict[tuple[int, int], dict[tuple[str, int], list[str]]] = {}
    for (source, nz, act, method), gon in keyed.items():
        if method != "gon" or gon["steps"] not in (None, 1):
            continue
        ae = keyed.get((source, nz, act, "ae"))
        if not ae or len(gon["n_params"]) != 1 or len(ae["n_params"]) != 1:
            continue
        pair = (gon["n_params"][0], ae["n_params"][0])
        groups.setdefault(pair, {}).setdefault((source, nz), []).append(str(act))
    return [
        {
            "gon": g,
            "ae": a,
            "ratio": g / a,
            "settings": [
                f"{source}, nz {nz}" + (f" ({', '.join(acts)})" if len(acts) > 1 else "")
                for (source, nz), acts in settings.items()
            ],
        }
        for (g, a), settings in groups.items()
    ]


def read_curve(run: Any) -> pd.DataFrame | None:
    path = Path(run.path) / "curve.csv"
    if not path.is_file():
        return None
    c = pd.read_csv(path)
    if c.empty or any(col not in c for col in CURVE_COLUMNS):
        return None
    return c.sort_values("step")


RIVALS = ("ae", "ae_linear")  # GON's rivals along training: the conv AE, the linear-encoder AE


def paired_curve_difference(
    long: pd.DataFrame, rival: str, confidence: float, *, relative: bool = False
) -> pd.DataFrame:
    """GON − ``rival`` test loss at each learning-curve step, paired over the seeds both have.

    ``long``: step, test_mse_per_pixel, method, seed (every main run of one dataset × nz). Rows:
    rival, step, mean, low, high, n (the paired t-interval; NaN bounds with one seed).
    ``relative``: the per-seed difference as a percentage of the rival's loss at that step, so
    that early and late points share one readable scale.
    """
    cols = ["rival", "step", "mean", "low", "high", "n"]
    wide = long[long["method"].isin(["gon", rival])].pivot_table(
        index=["step", "seed"], columns="method", values="test_mse_per_pixel"
    )
    if "gon" not in wide or rival not in wide:
        return pd.DataFrame(columns=cols)
    wide = wide.dropna(subset=["gon", rival])
    rows = []
    for step, g in wide.groupby(level="step"):
        gon, other = g["gon"].to_numpy(), g[rival].to_numpy()
        if relative:
            gon, other = 100.0 * gon / other, np.full_like(other, 100.0)
        d = paired_difference(gon, other, confidence)
        rows.append(
            {
                "rival": rival,
                "step": int(step),
                "mean": d.mean,
                "low": d.low,
                "high": d.high,
                "n": d.n,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _crossing_summary(diff: pd.DataFrame, rival: str, confidence: float) -> dict[str, Any] | None:
    """Where the paired difference's interval lies along training: ahead, behind, undecided."""
    d = diff[(diff["rival"] == rival) & (diff["step"] > 0)].sort_values("step")
    if d.empty:
        return None
    side = [
        "below" if h < 0 else "above" if lo > 0 else "spans"
        for lo, h in zip(d["low"], d["high"], strict=True)
    ]
    last = d.iloc[-1]
    # the first step from which the interval stays on the last point's side (None: never settles)
    settled = None
    if side[-1] != "spans":
        i = len(side) - 1
        while i > 0 and side[i - 1] == side[-1]:
            i -= 1
        settled = int(d["step"].iloc[i])
    return {
        "rival": method_label(rival),
        "last_step": int(last["step"]),
        "last": PairedDifference(
            mean=float(last["mean"]),
            low=float(last["low"]),
            high=float(last["high"]),
            n=int(last["n"]),
            std=math.nan,
            p_value=math.nan,
        ),
        "last_side": side[-1],
        "settled_from": settled,
        "steps_gon_ahead": [int(s) for s, x in zip(d["step"], side, strict=True) if x == "below"],
        "steps_gon_behind": [int(s) for s, x in zip(d["step"], side, strict=True) if x == "above"],
    }


def convergence_section(
    main_runs: Sequence[Any], params: Mapping[str, Any], *, confidence: float
) -> dict[str, Any]:
    """Steps and seconds until each main run's held-out learning curve reaches the threshold.

    The threshold of a dataset × nz is ``report.convergence_threshold`` × the AE's final
    curve loss (mean over its seeds, last curve point). A run that never reaches it is
    censored: counted and shown, never averaged (a mean that treats it as 0 would reward it).
    """
    factor = float((params.get("report") or {}).get("convergence_threshold", 1.1))
    curves = {id(r): c for r in main_runs if (c := read_curve(r)) is not None}
    base: dict[str, Any] = {
        "status": "run" if curves else "not run",
        "factor": factor,
        "scale": _main_scale(params),
        "items": [],
        "figure": None,
        "figure_difference": None,
        "missing_curves": sorted(r.name for r in main_runs if id(r) not in curves)
        if curves
        else [],
    }
    if not curves:
        return base
    listed = list((params.get("data") or {}).get("datasets") or [])
    methods_pref = list((params.get("train") or {}).get("methods") or [])
    keys = sorted(
        {(r.dataset, int(r.nz)) for r in main_runs if id(r) in curves},
        key=lambda k: (_rank(k[0], listed), k[1]),
    )
    items = []
    for dataset, nz in keys:
        runs = [r for r in main_runs if (r.dataset, int(r.nz)) == (dataset, nz) and id(r) in curves]
        ae_final = [
            float(curves[id(r)]["test_mse_per_pixel"].iloc[-1]) for r in runs if r.method == "ae"
        ]
        long = pd.concat(
            [
                curves[id(r)][list(CURVE_COLUMNS)].assign(method=r.method, seed=int(r.seed))
                for r in runs
            ],
            ignore_index=True,
        )
        relative = pd.concat(
            [paired_curve_difference(long, rival, confidence, relative=True) for rival in RIVALS],
            ignore_index=True,
        )
        item: dict[str, Any] = {
            "dataset": dataset_label(dataset),
            "dataset_id": dataset,
            "nz": nz,
            "threshold": None,
            "ae_final": None,
            "rows": [],
            "gon_vs_ae": None,
            "along_training": [
                c for rival in RIVALS if (c := _crossing_summary(relative, rival, confidence))
            ],
            "_curves": long,
            "_diff": relative,
        }
        if not ae_final:
            items.append(item)
            continue
        ae_mean = sum(ae_final) / len(ae_final)
        threshold = factor * ae_mean
        item |= {"threshold": threshold, "ae_final": ae_mean}
        reached: dict[str, dict[int, tuple[float, float]]] = {}
        for method in _ordered({r.method for r in runs}, methods_pref):
            per_seed, censored = {}, []
            for r in (x for x in runs if x.method == method):
                c = curves[id(r)]
                steps = time_to_threshold(c["step"], c["test_mse_per_pixel"], threshold)
                secs = time_to_threshold(c["train_seconds"], c["test_mse_per_pixel"], threshold)
                if math.isnan(steps):
                    censored.append(
                        {
                            "seed": int(r.seed),
                            "last_step": int(c["step"].iloc[-1]),
                            "final": float(c["test_mse_per_pixel"].iloc[-1]),
                        }
                    )
                else:
                    per_seed[int(r.seed)] = (steps, secs)
            reached[method] = per_seed
            item["rows"].append(
                {
                    "method": method_label(method),
                    "method_id": method,
                    "n": len(per_seed) + len(censored),
                    "reached": len(per_seed),
                    "censored": censored,
                    "steps": _ci((v[0] for v in per_seed.values()), confidence),
                    "seconds": _ci((v[1] for v in per_seed.values()), confidence),
                }
            )
        rows = {r["method_id"]: r for r in item["rows"]}
        if "gon" in rows and "ae" in rows:
            item["gon_vs_ae"] = _gon_vs_ae(reached["gon"], reached["ae"], rows, confidence)
        items.append(item)
    return base | {"items": items}


def _speed_verdict(d: PairedDifference | None, gon_censored: int, ae_censored: int) -> str:
    """GON vs the AE in time to threshold: censoring first, then the paired test."""
    if gon_censored > ae_censored:
        return "GON not faster (it failed to reach the threshold in more runs)"
    if ae_censored > gon_censored:
        return "GON faster (the AE failed to reach the threshold in more runs)"
    if d is None:
        return "not tested (no seed where both reached the threshold)"
    v = _verdict(d, d.p_value)
    if v == "not tested":
        return f"not tested (paired test undefined with n = {d.n})"
    return {
        "lower": "GON faster",
        "higher": "GON slower",
        "not distinguishable": "not distinguishable",
    }[v]


def _gon_vs_ae(
    gon: Mapping[int, tuple[float, float]],
    ae: Mapping[int, tuple[float, float]],
    rows: Mapping[str, dict[str, Any]],
    confidence: float,
) -> dict[str, Any]:
    """Paired GON − AE steps and seconds to threshold over seeds where both reached it."""
    common = sorted(set(gon) & set(ae))

    def paired(i: int) -> PairedDifference | None:
        if not common:
            return None
        return paired_difference(
            [gon[s][i] for s in common], [ae[s][i] for s in common], confidence
        )

    g_cens, a_cens = len(rows["gon"]["censored"]), len(rows["ae"]["censored"])
    steps, seconds = paired(0), paired(1)
    return {
        "common": len(common),
        "gon_censored": g_cens,
        "ae_censored": a_cens,
        "steps": steps,
        "seconds": seconds,
        "steps_verdict": _speed_verdict(steps, g_cens, a_cens),
        "seconds_verdict": _speed_verdict(seconds, g_cens, a_cens),
        "gon": rows["gon"],
        "ae": rows["ae"],
    }


def cost_section(
    main_runs: Sequence[Any],
    study_runs: Sequence[StudyRun],
    eff_runs: Sequence[Any],
    params: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    confidence: float,
) -> dict[str, Any]:
    rows = parameter_rows(main_runs, study_runs, eff_runs, params)
    ratios = _ratios(rows)
    pub = published_parameter_ratio(claims)
    return {
        "status": "run" if rows else "not run",
        "claims": claims_by_id(claims, STUDY_CLAIMS["cost"]),
        "parameter_rows": rows,
        "ratios": ratios,
        "ratio_range": (min(r["ratio"] for r in ratios), max(r["ratio"] for r in ratios))
        if ratios
        else None,
        "published": pub,
        "convergence": convergence_section(main_runs, params, confidence=confidence),
    }


# --------------------------------------------------------------------------------------------
# studies.csv, figures, and the one entry point build_report calls
# --------------------------------------------------------------------------------------------


def studies_table(runs: Sequence[StudyRun], *, confidence: float, headline_bn: str) -> pd.DataFrame:
    """studies.csv: one row per study × cell × method × bn_mode × split (failed runs counted)."""
    groups: dict[tuple, list[StudyRun]] = {}
    for r in runs:
        key = (
            r.study,
            r.cell,
            r.dataset,
            r.method,
            int(r.record.get("nz", 0)),
            str(r.record.get("activation", "")),
            int(r.record.get("steps", 1)),
        )
        groups.setdefault(key, []).append(r)
    out = []
    for (study, cell, dataset, method, nz, act, steps), group in groups.items():
        ok = [r for r in group if r.ok]
        for mode in _modes(headline_bn):
            for split in SPLITS:
                sse = _ci((r.loss(split, mode, SSE) for r in ok), confidence)
                mse = _ci((r.loss(split, mode, MSE) for r in ok), confidence)
                nan = math.nan
                out.append(
                    {
                        "study": study,
                        "cell": cell,
                        "dataset": dataset,
                        "method": method,
                        "nz": nz,
                        "activation": act,
                        "steps": steps,
                        "bn_mode": mode,
                        "split": split,
                        "headline": mode == headline_bn,
                        "n": sse.n if sse else 0,
                        "n_failed": len(group) - len(ok),
                        "confidence": confidence,
                        "unit": SSE,
                        "mean": sse.mean if sse else nan,
                        "ci_low": sse.low if sse else nan,
                        "ci_high": sse.high if sse else nan,
                        "std": sse.std if sse else nan,
                        "mse_per_pixel_mean": mse.mean if mse else nan,
                        "mse_per_pixel_ci_low": mse.low if mse else nan,
                        "mse_per_pixel_ci_high": mse.high if mse else nan,
                    }
                )
    return pd.DataFrame(out, columns=STUDIES_CSV_COLUMNS)


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())


def _write_figures(sections: dict[str, Any], fig_dir: Path, *, confidence: float) -> None:
    """Draw each section's figure when it has data; the path goes into the section."""
    a = sections["activation"]
    plot = a.pop("_plot", None)
    if plot is not None and not plot["points"].empty:
        fig_dir.mkdir(parents=True, exist_ok=True)
        study_figures.plot_activation(
            plot["curves"],
            plot["points"],
            fig_dir / "study_activation.png",
            reference=a["reference"],
            activations=plot["activations"],
            methods=plot["methods"],
            modes=a["bn"]["modes"],
            confidence=confidence,
        )
        a["figure"] = "figures/study_activation.png"
    m = sections["multistep"]
    plot = m.pop("_plot", None)
    if plot is not None and not plot["points"].empty:
        fig_dir.mkdir(parents=True, exist_ok=True)
        study_figures.plot_multistep(
            plot["points"],
            fig_dir / "study_multistep.png",
            modes=m["bn"]["modes"],
            confidence=confidence,
        )
        m["figure"] = "figures/study_multistep.png"
    lat = sections["latent"]
    plot = lat.pop("_plot", None)
    if plot is not None and not plot["points"].empty:
        fig_dir.mkdir(parents=True, exist_ok=True)
        study_figures.plot_latent(
            plot["points"],
            fig_dir / "study_latent.png",
            methods=plot["methods"],
            datasets=plot["datasets"],
            bn=lat["bn"]["headline"],
            confidence=confidence,
        )
        lat["figure"] = "figures/study_latent.png"
    lin = sections["linear_encoder"]
    frames = [
        item.pop("_points").assign(dataset=item["dataset_id"], nz=item["nz"])
        for item in lin["items"]
    ]
    frames = [f for f in frames if not f.empty]
    if frames:
        fig_dir.mkdir(parents=True, exist_ok=True)
        study_figures.plot_linear_control(
            pd.concat(frames, ignore_index=True),
            fig_dir / "study_linear_encoder.png",
            methods=list(LINEAR_METHODS),
            modes=lin["bn"]["modes"],
            confidence=confidence,
        )
        lin["figure"] = "figures/study_linear_encoder.png"
    conv = sections["cost"]["convergence"]
    panels = []
    for item in conv["items"]:
        panels.append(
            {
                "dataset": item["dataset_id"],
                "nz": item["nz"],
                "curves": item.pop("_curves"),
                "diff": item.pop("_diff"),
                "threshold": item["threshold"],
            }
        )
    if panels:
        fig_dir.mkdir(parents=True, exist_ok=True)
        study_figures.plot_convergence_curves(
            panels,
            fig_dir / "study_convergence.png",
            factor=conv["factor"],
            methods=list(sections["_methods"]),
            confidence=confidence,
        )
        conv["figure"] = "figures/study_convergence.png"
        diff_panels = [p for p in panels if not p["diff"].empty]
        if diff_panels:
            study_figures.plot_paired_difference(
                diff_panels, fig_dir / "study_paired_difference.png", confidence=confidence
            )
            conv["figure_difference"] = "figures/study_paired_difference.png"


def datasets_note(params: Mapping[str, Any], datasets_run: Iterable[str]) -> dict[str, Any]:
    """Whether this version of the pipeline can load CIFAR-10, and whether it ran."""
    listed = list((params.get("data") or {}).get("datasets") or [])
    return {
        "cifar10_supported": "cifar10" in DATASETS,
        "cifar10_listed": "cifar10" in listed,
        "cifar10_ran": "cifar10" in set(datasets_run),
        "allowed": [dataset_label(d) for d in DATASETS],
    }


def studies_context(
    runs_dir: Path,
    out_dir: Path,
    *,
    main_runs: Sequence[Any],
    eff_runs: Sequence[Any],
    params: Mapping[str, Any],
    claims: Mapping[str, Any],
    confidence: float,
    headline_bn: str,
    datasets_run: Iterable[str],
) -> tuple[dict[str, Any], list[str]]:
    """Every study section for the template, studies.csv and the figures; plus warnings.

    ``main_runs`` are :class:`repro.report.render.Run` (dataset, method, nz, seed, path,
    metrics, name); ``eff_runs`` anything with ``method`` and ``metrics``.
    """
    runs, curves, warnings = load_studies(Path(runs_dir) / "studies")
    profile = params.get("profile")
    other = sorted({r.name for r in runs if r.record.get("profile") not in (None, profile)})
    if other:
        warnings.append(f"study runs from a profile other than `{profile}`: {', '.join(other)}")
    sections: dict[str, Any] = {
        "activation": activation_section(
            runs, curves, params, claims, confidence=confidence, headline_bn=headline_bn
        ),
        "multistep": multistep_section(
            runs, params, claims, confidence=confidence, headline_bn=headline_bn
        ),
        "latent": latent_section(
            runs, main_runs, params, claims, confidence=confidence, headline_bn=headline_bn
        ),
        "linear_encoder": linear_encoder_section(
            main_runs, params, confidence=confidence, headline_bn=headline_bn
        ),
        "cost": cost_section(main_runs, runs, eff_runs, params, claims, confidence=confidence),
        "_methods": _ordered(
            {r.method for r in main_runs}, list((params.get("train") or {}).get("methods") or [])
        ),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(
        out_dir / "studies.csv",
        studies_table(runs, confidence=confidence, headline_bn=headline_bn),
    )
    _write_figures(sections, out_dir / "figures", confidence=confidence)
    sections.pop("_methods")
    sections["datasets_note"] = datasets_note(params, datasets_run)
    sections["confidence"] = confidence
    return sections, warnings
