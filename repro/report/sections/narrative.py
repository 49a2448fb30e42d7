"""The report's words that must stay true: executive summary, claims table, limitations.

Why generated: a summary typed by hand says "ELU is best" long after a re-run says otherwise.
Here every sentence is assembled from the verdicts (:mod:`repro.report.claims.evaluate`) and the params,
so it changes when they do. The template lays these structures out; it adds no facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repro.config import Params
from repro.report.claims.evaluate import ClaimResult, key_findings, verdict_counts
from repro.report.labels import bn_label, dataset_label
from repro.report.verdicts import INCONCLUSIVE, NOT_TESTED, VERDICTS

# Datasets the published claims cover that this package cannot run (no loader).
UNSUPPORTED_DATASETS = {
    "SmallNORB": "GON paper and reproducibility report (claim 1)",
    "COIL-20": "the Julia reproduction (the one dataset where its GON beat the AE)",
}


def _source_short(sources: Mapping[str, Any], key: str) -> str:
    src = sources.get(key) or {}
    return str(src.get("short") or src.get("cite") or key)


@dataclass(frozen=True)
class ClaimRow:
    """One claim × setting of the claims table; the claim's cells are shown on its first row."""

    first: bool
    id: str
    source: str  # the source's short name (claims.yaml ``sources``)
    where: str  # where in the source the claim stands
    quantity: str
    published: str  # the published number in words
    unit: str
    claim_verdict: str  # the claim's verdict over its settings
    setting: str
    mean: float
    low: float
    high: float
    n: int
    verdict: str  # this setting's verdict
    reason: str
    notes: list[str]
    run_ids: list[str]  # the MLflow runs behind the verdict
    files: list[str]  # the results files behind it
    rule: str
    same_rule_as: str | None  # the first claim spelling out the same rule


@dataclass(frozen=True)
class Finding:
    """A key finding of the executive summary."""

    id: str
    quantity: str
    source: str
    verdict: str
    per_setting: str  # "setting: verdict; …" when the claim has several settings
    reason: str


@dataclass(frozen=True)
class NotTestedGroup:
    kind: str  # the kind of reason: scale, dataset or design
    ids: tuple[str, ...]


@dataclass(frozen=True)
class VerdictCount:
    verdict: str
    n: int  # claims with this verdict


@dataclass(frozen=True)
class ExecutiveSummary:
    total: int
    counts: tuple[VerdictCount, ...]  # in VERDICTS order
    findings: tuple[Finding, ...]
    not_tested_reasons: tuple[NotTestedGroup, ...]


def claims_table(results: Sequence[ClaimResult], sources: Mapping[str, Any]) -> list[ClaimRow]:
    """Rows for the claims table: one per claim × setting, the claim's cells on its first row."""
    rows = []
    first_with_rule: dict[str, str] = {}
    for r in results:
        # A rule shared by several claims (Table 1's rows) is spelt out once.
        same_as = first_with_rule.setdefault(r.rule_text, r.id)
        for i, s in enumerate(r.settings):
            v = s.verdict
            rows.append(
                ClaimRow(
                    first=i == 0,
                    id=r.id,
                    source=_source_short(sources, str(r.claim["source"])),
                    where=r.claim.get("where", ""),
                    quantity=r.claim.get("quantity", ""),
                    published=r.published,
                    unit=r.unit,
                    claim_verdict=r.verdict,
                    setting=s.setting,
                    mean=v.mean,
                    low=v.low,
                    high=v.high,
                    n=v.n,
                    verdict=v.verdict,
                    reason=v.reason,
                    notes=s.notes,
                    run_ids=s.run_ids,
                    files=s.files,
                    rule=r.rule_text,
                    same_rule_as=same_as if same_as != r.id else None,
                )
            )
    return rows


def _finding(r: ClaimResult, sources: Mapping[str, Any]) -> Finding:
    tested = r.tested
    per_setting = (
        "; ".join(f"{s.setting}: {s.verdict.verdict}" for s in r.settings)
        if len(r.settings) > 1
        else ""
    )
    return Finding(
        id=r.id,
        quantity=r.claim.get("quantity", ""),
        source=_source_short(sources, str(r.claim["source"])),
        verdict=r.verdict,
        per_setting=per_setting,
        reason=tested[0].verdict.reason if tested else r.settings[0].verdict.reason,
    )


def executive_summary(
    results: Sequence[ClaimResult], sources: Mapping[str, Any], *, k: int = 3
) -> ExecutiveSummary:
    """Counts per verdict, and the ``k`` most important tested claims (``priority`` in claims.yaml)."""
    counts = verdict_counts(results)
    return ExecutiveSummary(
        total=len(results),
        counts=tuple(VerdictCount(v, counts[v]) for v in VERDICTS),
        findings=tuple(_finding(r, sources) for r in key_findings(results, k)),
        not_tested_reasons=_not_tested_reasons(results),
    )


def _not_tested_reasons(results: Iterable[ClaimResult]) -> tuple[NotTestedGroup, ...]:
    """Why claims were not tested, grouped by the kind of reason (scale, dataset, design)."""
    groups: dict[str, list[str]] = {}
    for r in results:
        if r.verdict != NOT_TESTED:
            continue
        reason = r.settings[0].verdict.reason
        kind = (
            "training scale below the published one"
            if "too small" in reason
            else "dataset not run or not supported"
            if "dataset" in reason
            else "not measured by this study"
        )
        groups.setdefault(kind, []).append(r.id)
    return tuple(NotTestedGroup(k, tuple(v)) for k, v in groups.items())


def limitations(
    params: Params,
    results: Sequence[ClaimResult],
    *,
    datasets_run: Iterable[str],
    published_epochs: Any,
    published_train_images: Any,
) -> list[str]:
    """What a reader must keep in mind, each item derived from the params or the verdicts."""
    train, studies, profile = params.train, params.studies, params.profile
    items = []
    if profile != "paper":
        items.append(
            f"Scale: the `{profile}` profile trains the main runs {train.epochs} epoch(s) of "
            f"{train.train_images:,} images and the ablations "
            f"{studies.epochs} epoch(s) of {studies.train_images:,} "
            f"images (published: {published_epochs} epochs of {int(published_train_images):,}). "
            "Comparisons between methods are judged at this scale; published absolute numbers "
            "are shown next to ours but not judged (their verdict is *not tested*). "
            "`repro profile paper && dvc repro` runs the published scale (a GPU is advised)."
        )
    inconclusive = [r.id for r in results if r.verdict == INCONCLUSIVE]
    if inconclusive:
        items.append(
            f"Seeds: {len(train.seeds)} seed(s) per main configuration and "
            f"{len(studies.seeds)} per ablation; with so few, the "
            f"{params.report.confidence:.0%} intervals are "
            f"wide, and {len(inconclusive)} claim(s) are inconclusive for that reason "
            f"({', '.join(f'`{i}`' for i in inconclusive)}). More seeds (`train.seeds`, "
            "`studies.seeds`) narrow them."
        )
    # studies.latent.seeds None: the latent study runs studies.seeds (repro.config_schema).
    latent_seeds = studies.latent.seeds if studies.latent.seeds is not None else studies.seeds
    if len(latent_seeds) < 2:
        items.append(
            f"The latent-size study (Table 1's nz) runs {len(latent_seeds)} seed: its numbers have "
            "no interval."
        )
    ran = {dataset_label(d) for d in datasets_run}
    order = ("MNIST", "Fashion-MNIST", "CIFAR-10")
    not_run = [d for d in order if d not in ran]
    if not_run:
        covered = [d for d in order if d in ran] + sorted(ran - set(order))
        listed = ", ".join(params.data.datasets)
        items.append(
            f"Datasets: this run covers {', '.join(covered) or 'none'}; "
            f"{', '.join(not_run)} {'is' if len(not_run) == 1 else 'are'} supported but not run "
            f"(`data.datasets`: {listed}; CIFAR-10 needs internet access or `data.mirror_dir`)."
        )
    items.append(
        "Not supported at all: "
        + "; ".join(f"{d} (claimed by {who})" for d, who in UNSUPPORTED_DATASETS.items())
        + ". Claims on them are not tested."
    )
    headline = params.evaluate.headline_bn
    other = "running" if headline == "batch" else "batch"
    items.append(
        f"BatchNorm mode: every verdict uses the headline mode, {bn_label(headline)} "
        f"(`evaluate.headline_bn`), the mode GON.py trains in. The other mode "
        f"({bn_label(other)}) is reported in full and can change a ranking: GON's latent at "
        "z = 0 depends on it (see *Both BatchNorm modes*)."
    )
    items.append(
        "Baselines: the GON paper's autoencoder is not public; ours mirrors the GON decoder with "
        "a Conv2d encoder (protocol §1), plus a linear-encoder AE control. 'Lower than an "
        "autoencoder' is judged against these."
    )
    items.append(
        "GFE: the data-efficiency study uses the GFE code's MLP decoder at reduced length, the "
        "convergence study one trained decoder and its first test images, and the "
        "decoder-gradient benchmark one batch; these are single, repeatable measurements where "
        "no seeds are shown."
    )
    return items
