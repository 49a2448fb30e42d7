"""The provenance section: compute per part of the study, data manifests, per-run records.

Also the consistency check of the main runs against params (a run made under another profile
or headline BatchNorm mode would silently mix protocols).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from repro.report.labels import dataset_label
from repro.report.loaders import ConvergenceStudy, EfficiencyRun, GradientBenchmark, Run
from repro.report.study_runs import StudyRun


def _keys_containing(obj: Any, word: str, prefix: str = "") -> list[tuple[str, str]]:
    """All (dotted key, value) leaves whose key mentions ``word``, at any depth.

    The manifests are written by another module; walking them generically keeps the report
    working when their nesting changes.
    """
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if word in str(k).lower() and not isinstance(v, (Mapping, list)):
                out.append((key, str(v)))
            else:
                out.extend(_keys_containing(v, word, key))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_keys_containing(v, word, f"{prefix}[{i}]"))
    return out


def resize_entries(obj: Any) -> list[tuple[str, str]]:
    """(dotted key, value) for keys describing the resize (not the hashes of resized images)."""
    return [(k, v) for k, v in _keys_containing(obj, "resize") if "sha256" not in k.lower()]


def _sha_entries(obj: Any) -> list[tuple[str, str]]:
    """(dotted key, digest) for every key mentioning sha256 in a manifest.

    The ``expected`` twins are left out: a manifest is only written when every actual hash
    equals its expected one (its ``verified`` flag says whether pinned hashes existed).
    """
    return [(k, v) for k, v in _keys_containing(obj, "sha256") if "expected" not in k.lower()]


def compute_seconds(
    runs: Sequence[Run],
    eff_runs: Sequence[EfficiencyRun],
    study_runs: Sequence[StudyRun],
    convergence: Sequence[ConvergenceStudy],
    bench: GradientBenchmark | None,
) -> list[dict[str, Any]]:
    """Measured compute per part of the study, as each stage recorded it (start-up excluded)."""
    main = sum(
        float(r.metrics.get("train_seconds") or 0.0) + float(r.metrics.get("eval_seconds") or 0.0)
        for r in runs
    )
    eff = sum(float(r.metrics.get("wall_seconds") or 0.0) for r in eff_runs)
    study = sum(r.value("train_seconds") or 0.0 for r in study_runs)
    conv = sum(
        float(f.get("seconds") or 0.0)
        for study in convergence
        for f in (study.summary.get("flows") or {}).values()
    )
    bench_s = sum(r.seconds or 0.0 for r in bench.results) if bench else 0.0
    parts = [
        ("main GON/AE/linear-AE runs (training + evaluation)", main),
        ("ablation studies: activation, multi-step, latent size (training)", study),
        ("GFE data-efficiency runs", eff),
        ("GFE convergence study (solvers)", conv),
        ("GFE decoder-gradient benchmark", bench_s),
    ]
    return [{"part": p, "seconds": s} for p, s in parts if s > 0]


def provenance_section(
    runs: Sequence[Run],
    manifests: Mapping[str, dict[str, Any] | None],
    provenance: Mapping[str, Any],
    *,
    compute: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Compute per part (:func:`compute_seconds`), the provenance block, each dataset's
    manifest (hashes, resize) and each main run's device, timings and MLflow run id."""
    train_s = sum(float(r.metrics.get("train_seconds") or 0.0) for r in runs)
    eval_s = sum(float(r.metrics.get("eval_seconds") or 0.0) for r in runs)
    return {
        "compute": list(compute),
        "compute_total": sum(float(c["seconds"]) for c in compute),
        "entries": list(provenance.items()),
        "manifests": [
            {
                "dataset": dataset_label(d),
                "present": m is not None,
                "source": (m or {}).get("source"),
                "verified": (m or {}).get("verified"),
                "hashes": _sha_entries(m or {}),
                "resize": resize_entries(m or {}),
            }
            for d, m in manifests.items()
        ],
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "total_seconds": train_s + eval_s,
        "runs": [
            {
                "name": r.name,
                "device": r.metrics.get("device"),
                "train_seconds": r.metrics.get("train_seconds"),
                "eval_seconds": r.metrics.get("eval_seconds"),
                "mlflow_run_id": r.metrics.get("mlflow_run_id"),
            }
            for r in sorted(runs, key=lambda r: r.name)
        ],
    }


def efficiency_run_records(eff_runs: Sequence[EfficiencyRun]) -> list[dict[str, Any]]:
    """Per data-efficiency run: its training time and MLflow run id."""
    return [
        {
            "name": r.name,
            "train_seconds": r.final("train_seconds"),
            "wall_seconds": r.metrics.get("wall_seconds"),
            "mlflow_run_id": r.metrics.get("mlflow_run_id"),
        }
        for r in eff_runs
    ]


def consistency_warnings(runs: Sequence[Run], profile: str, headline_bn: str) -> list[str]:
    """Runs produced under another profile or headline mode would silently mix protocols."""
    out = []
    other = sorted({r.name for r in runs if r.metrics.get("profile") not in (None, profile)})
    if other:
        out.append(f"runs from a profile other than `{profile}`: {', '.join(other)}")
    other_bn = sorted(
        {r.name for r in runs if r.metrics.get("headline_bn") not in (None, headline_bn)}
    )
    if other_bn:
        out.append(
            f"runs whose metrics name a headline BN mode other than `{headline_bn}`: {', '.join(other_bn)}"
        )
    return out
