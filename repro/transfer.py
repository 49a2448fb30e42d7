"""Generalisation to unseen classes (the GFE code's digits 0–4 → 5–9 experiment, docs/protocol.md §4).

Each method of the data-efficiency study trains exactly as there (same decoder, steps, optimiser,
seeds: :func:`repro.efficiency.train_efficiency_run`) but only on training images of the *seen*
classes (labels < ``SPLIT_LABEL``: the first ``max(efficiency.train_sizes)`` of them), and is
scored on held-out test images of the *unseen* classes (labels ≥ ``SPLIT_LABEL``) and, for
reference, of the seen ones. A method that encodes by optimisation (GFE) may reconstruct unseen
digits better than an amortised encoder (AE) trained only on seen ones.

Each run writes ``runs/transfer/<dataset>/<method>-s<seed>/{metrics.json, curve.csv}`` in the
data-efficiency schema (:class:`repro.records.EfficiencyMetrics`): ``final`` holds the unseen-class
scores (``test_*``) and the seen-class ones (``seen_test_*``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from repro.config import Params
from repro.data import load_split
from repro.efficiency import test_scores, train_efficiency_run
from repro.models import count_parameters
from repro.records import EfficiencyMetrics
from repro.result_files import write_rows
from repro.runtime import configure_torch

SPLIT_LABEL = 5  # seen classes: labels 0–4; unseen: 5–9


def class_split(
    images: torch.Tensor, labels: torch.Tensor, first: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(seen, unseen): the first ``first`` images with label < SPLIT_LABEL and with label ≥ it."""
    seen = labels < SPLIT_LABEL
    return images[seen][:first], images[~seen][:first]


def transfer_name(dataset: str, method: str, seed: int) -> str:
    return f"transfer/{dataset}/{method}-s{seed}"


def transfer_run(method: str, seed: int, params: Params, root: Path) -> dict[str, Any]:
    """Train ``method`` on seen classes; score on unseen and seen held-out classes; write files.

    A picklable job (:mod:`repro.engine`); returns ``{"metrics", "curve", "files"}`` as
    :func:`repro.efficiency.efficiency_run` does (the stage process adds the MLflow run id)."""
    eff = params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    data_dir = root / "data" / eff.dataset
    train_seen, _ = class_split(*load_split(data_dir, "train"), max(eff.train_sizes))
    test_seen, test_unseen = class_split(*load_split(data_dir, "test"), eff.eval_images)
    # Scored at the start and the end only: the curve of this study is not the question.
    cfg = dataclasses.replace(eff, eval_points=1)
    name = transfer_name(eff.dataset, method, seed)
    t0 = time.perf_counter()
    model, curve = train_efficiency_run(
        method,
        cfg,
        params.gfe,
        train_uint8=train_seen,
        test_uint8=test_unseen,
        train_size=int(train_seen.shape[0]),
        seed=seed,
        name=name,
    )
    seen = test_scores(model, test_seen, eff.loss)
    out = root / "runs" / name
    write_rows(out / "curve.csv", curve, curve[0])
    record = EfficiencyMetrics(
        run=name,
        dataset=eff.dataset,
        method=method,
        train_size=int(train_seen.shape[0]),
        seed=seed,
        architecture=eff.architecture,
        nz=eff.nz,
        loss=eff.loss,
        steps=eff.steps,
        batch_size=eff.batch_size,
        eval_images=int(test_unseen.shape[0]),
        n_params=count_parameters(model),
        final=curve[-1] | {f"seen_{k}": v for k, v in seen.items()},
        wall_seconds=time.perf_counter() - t0,
        profile=params.profile,
        mlflow_run_id=None,  # filled in by the stage process, which owns the MLflow store
    )
    record.write(out / "metrics.json")
    files = [out / "metrics.json", out / "curve.csv"]
    return {"metrics": record.to_dict(), "curve": curve, "files": files}
