"""One measurement, in its own process: warm-up, then one timed epoch of one loop.

:func:`measure` is what ``train_speed.py`` and ``speed_options.py`` run once per (method,
variant, repetition) through ``_speedlib.spawn("_measure:measure", opts)``. ``opts`` says which
loop (``variant``: ``baseline``, the GON.py re-statement; ``ours``, fit's loop body; ``fit``,
:func:`repro.train.fit` itself), on which images, and the options of a sweep (threads,
determinism, channels_last, mkldnn, ELU through ``exp``, fused Adam, torch.compile).

Both variants build the model with the same seed (same initial weights) and walk the same
permutation (``torch.randperm(n, generator=Generator().manual_seed(seed))``, as ``fit`` draws
it; the baseline's DataLoader gets it as its sampler); warm-up steps walk another permutation and
are excluded from timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _loops import (
    METHODS,
    Setting,
    loss_step,
    make_loader,
    make_pil_dataset,
    ours_loss,
    run_baseline,
    run_ours,
    setting_for,
)
from _speedlib import (
    children_peak_rss_mib,
    configure,
    cpu_seconds,
    others_share,
    peak_rss_mib,
    sync,
)

from repro.config import RunSpec, load_params
from repro.io import save_torch
from repro.train import fit, history_rows


class ExpELU(torch.nn.Module):
    """ELU through ``exp`` instead of ``expm1`` (a bench experiment, not the library's model).

    ``torch.nn.ELU`` calls ``expm1``, which this CPU build does not vectorise (about 20x the
    time of ``exp`` here). ``where(x > 0, x, exp(min(x, 0)) - 1)`` is the same function up to
    float rounding near 0 (absolute difference below 1e-7) and is twice differentiable; the
    clamp keeps the unused branch finite so that its zero gradient stays zero.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x, torch.exp(x.clamp(max=0)) - 1)


def swap_elu(model: torch.nn.Module) -> int:
    """Replace every ``nn.ELU`` (alpha 1) in ``model`` by :class:`ExpELU`; returns how many."""
    count = 0
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ELU) and child.alpha == 1.0:
                setattr(module, name, ExpELU())
                count += 1
    return count


def compiled_step(setting: Setting, model: torch.nn.Module, optimizer) -> Callable:
    """``torch.compile`` applied to ours: the forward + loss (backward and Adam stay eager)."""
    return loss_step(torch.compile(lambda x: ours_loss(setting, model, x)), optimizer)


def build(opts: dict[str, Any], setting: Setting, device: torch.device):
    """(model, optimiser) of the seed in ``opts``, with the model options of a sweep."""
    torch.manual_seed(opts["seed"])
    model = setting.make_model().to(device)
    if opts.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if opts.get("exp_elu"):
        swap_elu(model)
    optimizer = setting.make_optimizer(model)
    if opts.get("fused_adam"):
        if not isinstance(optimizer, torch.optim.Adam):
            raise ValueError("fused_adam applies to the Adam methods (gon, ae)")
        optimizer = torch.optim.Adam(model.parameters(), **optimizer.defaults | {"fused": True})
    return model, optimizer


def warmed_run(opts: dict[str, Any], setting: Setting, blob, device: torch.device) -> Callable:
    """The variant's loop after its warm-up steps: a call runs the timed epoch."""
    n, size = opts["images"], blob["images32"].shape[-1]
    pool = setting.pool if setting.method == "gfe" else n
    steps = n // setting.batch
    model, optimizer = build(opts, setting, device)
    order_gen = torch.Generator().manual_seed(opts["seed"])
    warm_order, order = (torch.randperm(pool, generator=order_gen) for _ in range(2))
    if setting.method == "gfe":  # the efficiency study: batches out of the first `pool` images
        order = order[: steps * setting.batch]
    if opts["variant"] == "baseline":
        dataset = make_pil_dataset(blob["images28"][:pool], blob["labels"][:pool], size)
        workers = opts["workers"]
        warm_loader = make_loader(dataset, setting.batch, warm_order, workers)
        run_baseline(setting, model, optimizer, warm_loader, device, max_steps=opts["warmup"])
        loader = make_loader(dataset, setting.batch, order, workers)
        return lambda: run_baseline(setting, model, optimizer, loader, device)
    data = blob["images32"][:pool].to(device)
    if opts.get("channels_last"):
        data = data.contiguous(memory_format=torch.channels_last)
    step_fn = compiled_step(setting, model, optimizer) if opts.get("compile") else None
    run_ours(setting, model, optimizer, data, warm_order.to(device), opts["warmup"], step_fn)
    dev_order = order.to(device)
    return lambda: run_ours(setting, model, optimizer, data, dev_order, steps, step_fn=step_fn)


def measure(opts: dict[str, Any]) -> dict[str, Any]:
    """Warm-up, then one timed epoch of ``opts['variant']``; time, memory, loss."""
    device = torch.device(opts["device"])
    # GON.py sets nothing: the baseline keeps torch's defaults unless a thread count is asked.
    configure(opts, device)
    blob = torch.load(opts["data"], weights_only=True)
    params = load_params(Path(opts["params"]))
    channels, size = blob["images32"].shape[1], blob["images32"].shape[-1]
    setting = setting_for(opts["method"], params, channels, size)
    rss_start = peak_rss_mib()
    if opts["variant"] == "fit":
        return measure_fit(opts, params, setting, blob, rss_start)
    run = warmed_run(opts, setting, blob, device)
    sync(device)
    rss_before = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    done, last_loss, nfe = run()
    sync(device)
    seconds = time.perf_counter() - t0
    cpu1 = cpu_seconds()
    out = {
        "seconds": seconds,
        "steps": done,
        "images": done * setting.batch,
        "steps_per_s": done / seconds,
        "last_loss": last_loss,
        "nfe": nfe,
        "others_cpu_share": others_share(cpu0, cpu1, seconds),
        "own_cpu_per_wall": (cpu1[1] - cpu0[1]) / seconds,
        **torch_settings(),
        "rss_start_mib": rss_start,
        "rss_before_timed_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "worker_peak_rss_mib": children_peak_rss_mib(),
    }
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def torch_settings() -> dict[str, Any]:
    """The thread counts and determinism a measurement ran with."""
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


def fit_history(opts: dict[str, Any], params, setting: Setting, blob) -> tuple[list, dict]:
    """(history rows, summary) of :func:`repro.train.fit` on the first ``opts['images']``
    images, validation and learning curve on the first 64 (the curve off: no points)."""
    n = opts["images"]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        save_torch(data_dir / "train.pt", {"images": blob["images32"], "labels": blob["labels"]})
        held_out = slice(0, min(64, n))
        for split in ("val", "test"):
            save_torch(
                data_dir / f"{split}.pt",
                {"images": blob["images32"][held_out], "labels": blob["labels"][held_out]},
            )
        train = dataclasses.replace(
            params.train,
            epochs=opts.get("fit_epochs", 2),
            train_images=n,
            val_images=held_out.stop,
            curve_points=0,
            device=opts["device"],
            num_threads=int(opts.get("threads") or 0),
        )
        spec = RunSpec("bench", setting.method, setting.nz, opts["seed"])
        p = dataclasses.replace(params, train=train)
        summary = fit(spec, p, data_dir=data_dir, run_dir=Path(tmp) / "run")
        return history_rows(Path(tmp) / "run" / "history.csv"), summary


def measure_fit(opts, params, setting: Setting, blob, rss_start: float) -> dict[str, Any]:
    """repro.train.fit itself: 2 epochs over the same images; epoch 2's seconds (warm)."""
    if setting.method not in ("gon", "ae"):
        raise ValueError("the fit variant exists for gon and ae only")
    rows, summary = fit_history(opts, params, setting, blob)
    warm = [r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]]
    seconds = statistics.median(warm)
    steps = opts["images"] // setting.batch
    return {
        "seconds": seconds,
        "epoch_seconds_all": [r["seconds"] for r in rows],
        "steps": steps,
        "images": steps * setting.batch,
        "steps_per_s": steps / seconds,
        "last_loss": rows[-1]["train_mse_per_pixel"],
        **torch_settings(),
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
        "cuda_peak_mib": summary.get("cuda_peak_bytes", float("nan")) / 2**20,
    }


# --------------------------------------------------------------------------------------------
# The options of a measuring script
# --------------------------------------------------------------------------------------------


def add_measure_args(ap: argparse.ArgumentParser) -> None:
    """The options of the scripts that time whole epochs (train_speed.py, speed_options.py)."""
    ap.add_argument("--methods", default="gon,ae,gfe", help="comma list of gon, ae, gfe")
    ap.add_argument("--images", type=int, default=6400, help="images per timed GON/AE epoch")
    ap.add_argument("--gfe-images", type=int, default=480, help="images per timed GFE run")
    ap.add_argument("--gfe-workers", type=int, default=2, help="baseline GFE DataLoader workers")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed epoch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)


def parse_methods(ap: argparse.ArgumentParser, args: argparse.Namespace, params) -> None:
    """``--methods`` as a list (unknown ones refused), and the GFE pool the data must cover."""
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; allowed: {list(METHODS)}")
    args.gfe_pool = max(params.efficiency.train_sizes)


def images_for(method: str, args: argparse.Namespace) -> int:
    """Images in the timed run of ``method``."""
    return args.gfe_images if method == "gfe" else args.images


def base_opts(method: str, args: argparse.Namespace, data_path: Path) -> dict[str, Any]:
    """The options of :func:`measure` every variant of ``method`` shares."""
    return {
        "method": method,
        "device": args.device,
        "data": str(data_path),
        "params": str(args.params),
        "images": images_for(method, args),
        "warmup": args.warmup,
        "seed": args.seed,
        "workers": args.gfe_workers if method == "gfe" else 0,
    }
