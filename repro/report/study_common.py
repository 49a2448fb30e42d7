"""Helpers every ablation-study and control section shares: ordering, intervals, the BatchNorm
modes, the training scale line, the claims a section quotes, and per-seed values to pair.

Each section is a plain dict (the template ``studies.md.j2`` and the tests read it as one); the
pieces built here are dicts too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from repro.config import BN_MODES
from repro.report.labels import bn_label
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


def study_scale(params: Mapping[str, Any], study: str) -> dict[str, Any]:
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


def main_scale(params: Mapping[str, Any]) -> dict[str, Any]:
    """Training scale of the main runs (the controls' sections)."""
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


def by_seed(runs: Iterable[StudyRun], get: Callable[[StudyRun], float | None]) -> dict[int, float]:
    """``get`` of each finished run that has a value, keyed by seed (for paired tests)."""
    return {r.seed: v for r in runs if r.ok and (v := get(r)) is not None}
