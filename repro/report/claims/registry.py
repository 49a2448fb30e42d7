"""The claims registry, ``claims.yaml``, checked before any rule runs.

Every claim has a known source and a well-formed rule (its kind, the selectors of each side
naming a known measure, the tolerance or margin); ids are unique. An error names the claim id
and the key to fix (:class:`~repro.report.claims.evidence.ClaimsError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro.report.claims.evidence import ClaimsError
from repro.report.claims.measures import MEASURES
from repro.report.loaders import CLAIMS_PATH, load_claims

RULE_KINDS = ("match", "less", "lowest", "not_tested")
# The sides of each kind of rule: the selectors, merged over ``where``, that name a measure.
RULE_SIDES = {"match": ("a",), "less": ("a", "b"), "lowest": ("candidate",)}


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


def _check_settings(rule: Mapping[str, Any], cid: str) -> None:
    settings = rule.get("settings", [{}])
    _need(isinstance(settings, list) and settings, cid, "rule.settings", "must be a non-empty list")
    if "settings_from" in rule:
        spec = rule["settings_from"]
        _need(
            isinstance(spec, Mapping) and {"key", "param"} <= set(spec),
            cid,
            "rule.settings_from",
            "must map `key` (a selector) and `param` (a dotted params key holding a list)",
        )


def _check_rule(claim: Mapping[str, Any], rule: Mapping[str, Any], cid: str) -> None:
    """A judged rule's selectors, its published target (match) and its tolerance or margin."""
    kind, where = rule["kind"], rule.get("where") or {}
    for side in RULE_SIDES[kind]:
        key = "rule.where" if kind == "match" else f"rule.{side}"
        _check_selector({**where, **(rule.get(side) or {})}, cid, key)
    if kind == "match":
        target = rule.get("target", claim.get("value"))
        _need(
            isinstance(target, int | float),
            cid,
            "rule.target",
            "is needed when the published value is not a number",
        )
        _check_tolerance(rule.get("tolerance"), cid, "rule.tolerance")
        return
    if kind == "lowest":
        rivals = rule.get("rivals")
        _need(isinstance(rivals, Mapping) and rivals, cid, "rule.rivals", "must name ≥ 1 rival")
        for name, sel in rivals.items():
            _check_selector({**where, **(sel or {})}, cid, f"rule.rivals.{name}")
    _check_tolerance(rule.get("margin"), cid, "rule.margin")


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
        _check_settings(rule, cid)
        if kind == "not_tested":
            _need(bool(rule.get("reason")), cid, "rule.reason", "must say why it is not tested")
        else:
            _check_rule(claim, rule, cid)


def load_registry(path: Path = CLAIMS_PATH) -> dict[str, Any]:
    """claims.yaml, validated (see :func:`validate_registry`)."""
    registry = load_claims(path)
    validate_registry(registry)
    return registry


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
