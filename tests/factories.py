"""Results files for tests, built through the schema the stages write (repro.records).

Each factory fills the fields a test does not care about with plausible values, so a test states
only what it checks and still writes a file the report's loaders accept.
"""

from __future__ import annotations

from typing import Any

from repro.records import DiagnosisMetrics, EncodingMetrics, MainMetrics, StudyCellMetrics

SPREAD = {"shuffles": 1, "test_sse_per_image_std": 0.0, "test_sse_per_image_max_abs_diff": 0.0}


def main_metrics(*, dataset: str, method: str, nz: int, seed: int, **fields: Any) -> MainMetrics:
    """A main run's metrics.json; ``fields`` override the defaults (``losses`` is required)."""
    defaults: dict[str, Any] = {
        "run": f"{dataset}/{method}-nz{nz}-s{seed}",
        "activation": "elu",
        "n_params": 1000,
        "epochs": 1,
        "train_images": 50000,
        "train_seconds": 100.0,
        "eval_seconds": 1.0,
        "device": "cpu",
        "profile": "quick",
        "eval_batch_size": 64,
        "val_images": 1000,
        "test_images": 10000,
        "curve_images": 1000,
        "headline_bn": "batch",
        "final_train_mse_per_pixel": None,
        "mlflow_run_id": None,
        "affinity_error": None,
        "batch_order_spread": SPREAD,
        "running_order_spread": SPREAD,
    }
    return MainMetrics(dataset=dataset, method=method, nz=nz, seed=seed, **(defaults | fields))


def study_cell(
    *, study: str, cell: str, dataset: str, runs: list[dict[str, Any]], **fields: Any
) -> StudyCellMetrics:
    """A study cell's metrics.json holding ``runs`` (one record per variant × seed)."""
    defaults: dict[str, Any] = {
        "profile": "quick",
        "device": "cpu",
        "seeds": sorted({int(r["seed"]) for r in runs}),
        "epochs": 1,
        "train_images": 50000,
        "test_images": 10000,
        "train_seconds": 0.0,
    }
    return StudyCellMetrics(
        study=study, cell=cell, dataset=dataset, runs=runs, **(defaults | fields)
    )


def diagnosis_record(as_run_gap: float) -> DiagnosisMetrics:
    """as_run: SSE 56 (+ small seed noise) and D(0) `as_run_gap` above it; summed: SSE 30."""
    rows = []
    for seed, noise in enumerate((0.0, 0.2, -0.1)):
        rows.append(
            {
                "variant": "as_run",
                "seed": seed,
                "latent_norm": 0.01,
                "step_size": 1.0,
                "test_sse_per_image": 56.0 + noise,
                "origin_sse_per_image": 56.0 + noise + as_run_gap,
            }
        )
        rows.append(
            {
                "variant": "summed",
                "seed": seed,
                "latent_norm": 9.0,
                "step_size": 16384.0,
                "test_sse_per_image": 30.0 + noise / 2,
                "origin_sse_per_image": 60.0,
            }
        )
    return DiagnosisMetrics(
        dataset="mnist", method="gon", architecture="mlp", train_size=1000, steps=150,
        eval_images=256, inner_loss_divisor=16384,
        variants={"as_run": "η = 1 (the study's setting)", "summed": "η = n·H·W"}, rows=rows,
        mlflow_run_id="diag-run",
    )  # fmt: skip


def encoding_record() -> EncodingMetrics:
    """AE leaves a gap of ~2 the flow removes; GFE ~0; GFE from a random start ~0.5 worse."""
    rows = []
    for seed, noise in enumerate((0.0, 0.1, -0.05)):
        rows.append(
            {
                "method": "gfe_adaptive",
                "seed": seed,
                "own_loss": 0.18 + noise / 10,
                "refined_loss": 0.18 + noise / 10 - 0.001 * (seed + 1),
                "gap_loss": 0.001 * (seed + 1),
                "own_sse_per_image": 29.0,
                "refined_sse_per_image": 28.9,
                "refine_nfe": 40.0,
                "encode_nfe": 262.0,
                "encode_seconds_per_image": 0.018,
                "random_start_loss": 0.23 + noise / 10 + 0.003 * seed,
                "random_start_sse_per_image": 40.0,
            }
        )
        rows.append(
            {
                "method": "ae",
                "seed": seed,
                "own_loss": 0.24 + noise / 10,
                "refined_loss": 0.20 + noise / 10 + 0.002 * seed,
                "gap_loss": 0.04 - 0.002 * seed,
                "own_sse_per_image": 49.0,
                "refined_sse_per_image": 35.0,
                "refine_nfe": 300.0,
                "encode_nfe": 0.0,
                "encode_seconds_per_image": 5e-5,
            }
        )
    return EncodingMetrics(
        dataset="mnist", train_size=1000, eval_images=256, loss="bce", random_start_seed=1234,
        rows=rows, mlflow_run_id="enc-run",
    )  # fmt: skip
