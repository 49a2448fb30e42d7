"""Scaling curve: seconds per training epoch against batch size and against models trained together.

Does training bigger batches, or several models at once, pay? Two sweeps of GON training
(params.yaml's model: nz 32, ngf 16, one inner step, Adam lr 1e-4), on a fixed epoch of
``--images`` images (3,200 by default, last partial batch dropped):

* ``batch_size``: one model, one ordinary training step as in :func:`repro.train.fit`, for each
  batch size; seconds per epoch and images per second.
* ``models``: N models (seeds 0..N-1) at ``--batch``, trained either *batched* (one vmapped step
  over stacked parameters, :class:`repro.batched.StackedTrainer`) or *sequential* (N ordinary
  models, one step each, the pipeline today). ``ratio`` = batched / sequential seconds (below 1:
  training together pays); ``batched_vs_one`` = batched seconds for N models / one model's.

An epoch is timed by running ``--steps`` steps after ``--warmup`` untimed ones and scaling to the
epoch's number of steps; each number is the median of ``--repeats`` repetitions. Synthetic uint8
images (the timing does not depend on their content). The 1-minute load average is recorded
before and after: on a shared machine, read the numbers with it. Usage::

    python bench/scaling.py --out reports/scaling.json [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _loops import fit_step
from _speedlib import seconds_per_step

from repro.batched import StackedTrainer, data_orders, seeded_models, together_batches
from repro.encoders import LatentModel, build_model
from repro.provenance import cpu_name

BATCH_SIZES = (16, 32, 64, 128, 256)
N_MODELS = (1, 2, 3, 5)


def _batches(train_x: torch.Tensor, seeds: list[int], batch: int):
    """Endless stacked batches (N, B, 1, 32, 32), each model in its own seeded order."""
    orders = data_orders(seeds)
    while True:
        yield from together_batches(train_x, orders, batch)


def _models(args: argparse.Namespace, seeds: list[int], batch: int, device) -> list[LatentModel]:
    def build() -> LatentModel:
        return build_model(
            args.method, nz=args.nz, ngf=args.ngf, activation="elu", inner_norm=batch
        ).to(device)

    return seeded_models(seeds, build)


def sequential_step(models: list[LatentModel], batches) -> Callable[[], None]:
    """One ordinary training step of each model, one after the other (``fit``'s inner loop)."""
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-4, betas=(0.9, 0.999)) for m in models]

    def step() -> None:
        x = next(batches)
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            fit_step(model, optimizer, x[i])

    return step


def batched_step(models: list[LatentModel], batches) -> Callable[[], None]:
    """One vmapped step of all models over their stacked parameters."""
    trainer = StackedTrainer(models, lr=1e-4, betas=(0.9, 0.999))
    return lambda: trainer.step(next(batches))


def batch_size_sweep(args, train_x: torch.Tensor, time_it: Callable) -> list[dict[str, Any]]:
    """One model at each batch size: seconds per step and per epoch, images per second."""
    rows = []
    for b in args.batch_sizes:
        models = _models(args, [0], b, train_x.device)
        per_step = time_it(sequential_step(models, _batches(train_x, [0], b)))
        seconds = per_step * (args.images // b)
        row = {
            "batch_size": b,
            "seconds_per_step": per_step,
            "seconds_per_epoch": seconds,
            "images_per_s": (args.images // b) * b / seconds,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def models_sweep(args, train_x: torch.Tensor, time_it: Callable) -> list[dict[str, Any]]:
    """N models at ``--batch``, trained one after another and batched: seconds per epoch."""
    rows = []
    steps_per_epoch = args.images // args.batch
    for n in args.n_models:
        seeds = list(range(n))
        models = _models(args, seeds, args.batch, train_x.device)
        seq = time_it(sequential_step(models, _batches(train_x, seeds, args.batch)))
        models = _models(args, seeds, args.batch, train_x.device)
        bat = time_it(batched_step(models, _batches(train_x, seeds, args.batch)))
        row = {
            "n_models": n,
            "batched_seconds": bat * steps_per_epoch,
            "sequential_seconds": seq * steps_per_epoch,
            "ratio": bat / seq,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    one = rows[0]["batched_seconds"] if rows and rows[0]["n_models"] == 1 else None
    for row in rows:
        row["batched_vs_one"] = row["batched_seconds"] / one if one else None
    return rows


def parse_args() -> argparse.Namespace:
    """The sweeps' options (model shape, images per epoch, batch sizes, model counts, timing)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--method", default="gon", choices=["gon", "ae", "ae_linear"])
    ap.add_argument("--nz", type=int, default=32)
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--images", type=int, default=3200, help="images in one epoch")
    ap.add_argument("--batch", type=int, default=64, help="batch size of the models sweep")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    ap.add_argument("--n-models", type=int, nargs="+", default=list(N_MODELS))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per repetition")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    train_x = torch.randint(0, 256, (args.images, 1, 32, 32), generator=g, dtype=torch.uint8)
    train_x = train_x.to(device)

    def time_it(step: Callable[[], None]) -> float:
        return seconds_per_step(step, args.warmup, args.steps, args.repeats, device)

    by_batch = batch_size_sweep(args, train_x, time_it)
    by_models = models_sweep(args, train_x, time_it)
    result = {
        "benchmark": "scaling",
        "machine": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{cpu_name()}, {os.cpu_count()} cores"
        ),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "method": args.method,
        "nz": args.nz,
        "ngf": args.ngf,
        "images_per_epoch": args.images,
        "models_batch_size": args.batch,
        "timing": f"median of {args.repeats} x {args.steps} steps after {args.warmup} warm-up, "
        "scaled to one epoch (last partial batch dropped)",
        "ratio_definition": "batched_seconds / sequential_seconds (below 1: batching pays)",
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "wall_seconds": time.perf_counter() - t_start,
        "batch_size": by_batch,
        "models": by_models,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
