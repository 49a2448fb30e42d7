"""What one run of each stage group does, as a picklable job for :mod:`repro.engine`.

* :func:`main_run` — a GON / AE / linear-encoder AE of the main comparison: train
  (:func:`repro.train.fit`, with its held-out learning curve), then evaluate on the whole
  validation subset and test split in both BatchNorm modes, the batch-order spread, the
  affine-encoder test and a reconstruction grid; writes ``metrics.json``.
* :func:`study_run` — one variant × seed of an ablation: train and score (:mod:`repro.studies`).
* :func:`efficiency_run` — one GFE data-efficiency run (:mod:`repro.efficiency`).

Each returns a record for the stage process, which alone writes summaries and MLflow runs; the
files a run owns are written by the run itself, atomically, so a killed group leaves each run
either complete or resumable.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from repro.config import Params, RunSpec
from repro.data import load_split
from repro.evaluate import affinity_error, evaluate_model, save_reconstruction_grid
from repro.io import atomic_write, save_torch, write_json
from repro.train import (
    CURVE,
    HISTORY,
    DivergenceError,
    configure_torch,
    fit,
    history_rows,
    load_trained,
    select_device,
)

#: Relative cost of one optimiser step per method (a GON step is a forward, an inner gradient
#: with create_graph, a second forward and a double backward): measured here on one thread at
#: batch 64, nz 32 — GON 65 ms, AE 35 ms, linear-encoder AE 20 ms. Only orders the schedule.
STEP_COST = {"gon": 3.2, "ae": 1.7, "ae_linear": 1.0}
#: The same for a data-efficiency run (MLP decoder; a GFE step integrates a flow per batch).
EFFICIENCY_STEP_COST = {"gfe": 8.0, "gfe2": 8.0, "gfe_adaptive": 6.0, "gon": 1.5, "ae": 1.0}


def step_cost(method: str, *, gon_steps: int = 1) -> float:
    return STEP_COST.get(method, 2.0) * (gon_steps if method == "gon" else 1)


def _setup(params: Params) -> torch.device:
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads, tf32=params.train.tf32)
    return device


def main_run(spec: RunSpec, params: Params, *, root: Path) -> dict[str, Any]:
    """Train and evaluate one main run; returns its metrics, history and curve (see module)."""
    device = _setup(params)
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
    metrics = {
        "run": spec.name,
        **asdict(spec),
        "activation": params.model.activation,
        "n_params": summary["n_params"],
        "epochs": params.train.epochs,
        "train_images": params.train.train_images,
        "train_seconds": summary["train_seconds"],
        "eval_seconds": time.perf_counter() - t0,
        "device": str(device),
        "profile": params.profile,
        "eval_batch_size": cfg.batch_size,
        "val_images": int(splits["val"].shape[0]),
        "test_images": int(splits["test"].shape[0]),
        "curve_images": params.train.curve_images,
        "headline_bn": cfg.headline_bn,
        "final_train_mse_per_pixel": summary["final_train_mse_per_pixel"],
        "mlflow_run_id": None,  # filled in by the stage process, which owns the MLflow store
        "affinity_error": affinity,
        **result,
    }
    write_json(out_dir / "metrics.json", metrics)
    return {
        "metrics": metrics,
        "history": history_rows(out_dir / HISTORY),
        "curve": history_rows(out_dir / CURVE),
        "files": [out_dir / name for name in ("metrics.json", HISTORY, CURVE, "recon.png")],
    }


def study_run(
    variant: Any, seed: int, vparams: Params, *, root: Path, study: str, cell: str
) -> dict[str, Any]:
    """Train and score one variant × seed of an ablation; a diverged run is a record too."""
    from repro.studies import failed_record, score_variant

    device = _setup(vparams)
    s = vparams.studies
    data_dir = root / "data" / variant.dataset
    splits = {
        split: load_split(data_dir, split)[0][: s.test_images].to(device)
        for split in ("val", "test")
    }
    run_dir = root / "models" / "studies" / study / cell / f"{variant.label}-s{seed}"
    try:
        summary = fit(variant.spec(seed), vparams, data_dir=data_dir, run_dir=run_dir)
    except DivergenceError as err:
        return {"record": failed_record(variant, seed, err), "history": [], "curve": []}
    _, record = score_variant(
        variant, seed, vparams, run_dir=run_dir, splits=splits, summary=summary
    )
    return {
        "record": record,
        "history": history_rows(run_dir / HISTORY),
        "curve": history_rows(run_dir / CURVE) if (run_dir / CURVE).exists() else [],
    }


def efficiency_run(
    method: str, train_size: int, seed: int, params: Params, *, root: Path
) -> dict[str, Any]:
    """One data-efficiency run: train on the first ``train_size`` images, scored along the way."""
    from repro.efficiency import train_efficiency_run
    from repro.models import count_parameters

    cfg = params.efficiency
    configure_torch(torch.device("cpu"), params.train.num_threads)
    name = efficiency_name(cfg.dataset, method, train_size, seed)
    out = root / "runs" / name
    data_dir = root / "data" / cfg.dataset
    train_x, _ = load_split(data_dir, "train")
    test_x = load_split(data_dir, "test")[0][: cfg.eval_images]
    t0 = time.perf_counter()
    model, curve = train_efficiency_run(
        method,
        cfg,
        params.gfe,
        train_uint8=train_x,
        test_uint8=test_x,
        train_size=train_size,
        seed=seed,
        name=name,
    )
    with atomic_write(out / "curve.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    save_torch(
        root / "models" / name / "model.pt", {"state_dict": model.state_dict(), "method": method}
    )
    metrics = {
        "run": name,
        "dataset": cfg.dataset,
        "method": method,
        "train_size": train_size,
        "seed": seed,
        "architecture": cfg.architecture,
        "nz": cfg.nz,
        "loss": cfg.loss,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "eval_images": cfg.eval_images,
        "n_params": count_parameters(model),
        "final": curve[-1],
        "wall_seconds": time.perf_counter() - t0,
        "profile": params.profile,
        "mlflow_run_id": None,
    }
    write_json(out / "metrics.json", metrics)
    return {"metrics": metrics, "curve": curve, "files": [out / "metrics.json", out / "curve.csv"]}


def efficiency_name(dataset: str, method: str, train_size: int, seed: int) -> str:
    """``efficiency/<dataset>/<method>-n<size>-s<seed>``: results under runs/, model under models/."""
    return f"efficiency/{dataset}/{method}-n{train_size}-s{seed}"
