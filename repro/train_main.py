"""The main comparison's group of a ``train@<dataset>-<nz>`` stage: every method × seed.

Each run is a :func:`repro.groups.main_run` job (train, then evaluate; it writes its own files
and resumes from its own checkpoint after a crash), in worker processes or one after another as
``train.workers`` says; each is recorded as a nested MLflow run (:mod:`repro.train_group`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from repro.config import Params, flatten, run_spec
from repro.engine import Job, Outcome, mode_of, resolve_workers
from repro.groups import main_run, step_cost
from repro.records import MainMetrics
from repro.runtime import select_device
from repro.train_group import run_tracked_group
from repro.train_run import run_config


def _child_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """What a model's MLflow run shows of its ``metrics.json``: losses, affinity, size, time."""
    flat = flatten({"losses": metrics["losses"], "affinity_error": metrics["affinity_error"]})
    return flat | {k: metrics[k] for k in ("n_params", "train_seconds", "eval_seconds")}


def train_main_group(
    params: Params, dataset: str, nz: int, root: Path
) -> tuple[str, dict[str, dict[str, float]]]:
    """Train and evaluate every method × seed of ``dataset`` at latent size ``nz``.

    Each run's ``metrics.json`` gets its MLflow run id. Returns the group's name and its
    :func:`headline` numbers.
    """
    t = params.train
    specs = [run_spec(params, dataset, m, nz, seed) for m in t.methods for seed in t.seeds]
    device = select_device(t.device)
    workers = resolve_workers(t.workers, device.type, len(specs))
    tags = {"profile": params.profile, "device": str(device), "dataset": dataset}
    jobs = [
        Job(s.name, main_run, {"spec": s, "params": params, "root": root}, step_cost(s.method))
        for s in specs
    ]
    finals: dict[tuple[str, str], dict[str, float]] = {}  # (method, seed) -> {bn mode: loss}

    def record(outcome: Outcome, child: Callable[..., str | None]) -> BaseException | None:
        spec = outcome.job.kwargs["spec"]
        rec = outcome.result or {}
        metrics = rec.get("metrics", {})
        run_id = child(
            name=spec.name,
            run_params=flatten(run_config(spec, params)),
            tags=tags | {"method": spec.method, "seed": str(spec.seed)},
            epochs=rec.get("history", []),
            curve=rec.get("curve", []),
            metrics=_child_metrics(metrics) if metrics else None,
            artifacts=rec.get("files", []),
            error=outcome.error,
        )
        if outcome.error is None:
            metrics["mlflow_run_id"] = run_id
            MainMetrics(**metrics).write(spec.run_dir(root / "runs") / "metrics.json")
            losses = metrics["losses"]
            finals[spec.method, spec.name] = {
                mode: losses[mode]["test"]["sse_per_image"] for mode in losses
            }
        return outcome.error

    run_tracked_group(
        params,
        jobs,
        workers=workers,
        stage=f"train@{dataset}-{nz}",  # the DVC stage name (dvc.yaml's matrix)
        experiment=f"{params.tracking.experiment}/train",
        run_params=flatten({"train": asdict(t), "evaluate": asdict(params.evaluate)})
        | {"workers": workers, "mode": mode_of(workers)},
        tags=tags,
        record=record,
    )
    return specs[0].group, headline(finals)


def headline(finals: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """The group's DVC metrics: mean held-out test SSE per image over seeds, per BN mode × method.

    Short keys (``batch.gon``) so that ``dvc metrics show`` and ``dvc exp show`` stay narrow; the
    per-run numbers are each run's ``metrics.json``, failed runs are left out of the mean.
    """
    by_mode: dict[str, dict[str, list[float]]] = {}
    for (method, _), losses in finals.items():
        for mode, loss in losses.items():
            by_mode.setdefault(mode, {}).setdefault(method, []).append(loss)
    return {
        mode: {m: sum(v) / len(v) for m, v in sorted(methods.items())}
        for mode, methods in sorted(by_mode.items())
    }
