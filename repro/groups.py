"""What one main run does, as a picklable job for :mod:`repro.engine`, and what runs cost.

* :func:`main_run` — a GON / AE / linear-encoder AE of the main comparison: train
  (:func:`repro.train.fit`, with its held-out learning curve), then evaluate on the whole
  validation subset and test split in both BatchNorm modes, the batch-order spread, the
  affine-encoder test and a reconstruction grid; writes ``metrics.json``.
The other groups' runs live with their concern: :func:`repro.studies.study_run` (one variant ×
seed of an ablation) and :func:`repro.efficiency.efficiency_run` (one GFE data-efficiency run).
This module also holds the relative step costs that order every group's schedule.

Each returns a record for the stage process, which alone writes summaries and MLflow runs; the
files a run owns are written by the run itself, atomically, so a killed group leaves each run
either complete or resumable.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from repro.config import Params, RunSpec
from repro.data import load_split
from repro.evaluate import affinity_error, evaluate_model, save_reconstruction_grid
from repro.records import MainMetrics
from repro.runtime import setup_device
from repro.train import fit
from repro.train_files import CURVE, HISTORY, history_rows, load_trained

#: Relative cost of one optimiser step per method (a GON step is a forward, an inner gradient
#: with create_graph, a second forward and a double backward): measured here on one thread at
#: batch 64, nz 32 — GON 65 ms, AE 35 ms, linear-encoder AE 20 ms. Only orders the schedule.
STEP_COST = {"gon": 3.2, "ae": 1.7, "ae_linear": 1.0}


def step_cost(method: str, *, gon_steps: int = 1) -> float:
    return STEP_COST.get(method, 2.0) * (gon_steps if method == "gon" else 1)


def main_run(spec: RunSpec, params: Params, *, root: Path) -> dict[str, Any]:
    """Train and evaluate one main run; returns its metrics, history and curve (see module)."""
    device = setup_device(params)
    data_dir = root / "data" / spec.dataset
    out_dir, model_dir = spec.run_dir(root / "runs"), spec.model_dir(root / "models")
    summary = fit(spec, params, data_dir=data_dir, run_dir=model_dir, results_dir=out_dir)
    cfg = params.evaluate
    splits = {s: load_split(data_dir, s)[0].to(device) for s in ("val", "test")}
    splits["val"] = splits["val"][: cfg.val_images]  # None keeps the whole split
    model, _ = load_trained(model_dir, spec, params, channels=splits["test"].shape[1])
    model.to(device)
    t0 = time.perf_counter()
    result = evaluate_model(
        model, splits, batch_size=cfg.batch_size, order_shuffles=cfg.order_shuffles
    )
    # Is this model's image -> latent map affine? (GON and ae_linear: yes; the conv AE: no.)
    affinity = affinity_error(
        model,
        splits["test"],
        combinations=cfg.affinity_combinations,
        batch_size=min(cfg.batch_size, splits["test"].shape[0] // 3),  # three disjoint batches
        seed=spec.seed,
    )
    save_reconstruction_grid(
        model,
        splits["test"],
        out_dir / "recon.png",
        bn_mode=cfg.headline_bn,
        batch_size=cfg.batch_size,
    )
    record = MainMetrics(
        run=spec.name,
        **asdict(spec),
        activation=params.model.activation,
        n_params=summary["n_params"],
        epochs=params.train.epochs,
        train_images=params.train.train_images,
        train_seconds=summary["train_seconds"],
        eval_seconds=time.perf_counter() - t0,
        device=str(device),
        profile=params.profile,
        eval_batch_size=cfg.batch_size,
        val_images=int(splits["val"].shape[0]),
        test_images=int(splits["test"].shape[0]),
        curve_images=params.train.curve_images,
        headline_bn=cfg.headline_bn,
        final_train_mse_per_pixel=summary["final_train_mse_per_pixel"],
        mlflow_run_id=None,  # filled in by the stage process, which owns the MLflow store
        affinity_error=affinity,
        **result,
    )
    record.write(out_dir / "metrics.json")
    metrics = record.to_dict()
    return {
        "metrics": metrics,
        "history": history_rows(out_dir / HISTORY),
        "curve": history_rows(out_dir / CURVE),
        "files": [out_dir / name for name in ("metrics.json", HISTORY, CURVE, "recon.png")],
    }
