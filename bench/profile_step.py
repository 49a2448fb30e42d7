"""Benchmark: where the time of a GON training step goes, in our loop and in GON.py's.

In a fresh process (``train.num_threads`` threads, deterministic as fit runs):

* **top ops**: torch.profiler over ``--steps`` steps of ours (GON), the ``--top`` operators by
  self time (CPU, or device time on a GPU), per step;
* **phases**: milliseconds per GON step in each phase (data, inner forward, inner gradient, outer
  forward, outer backward, optimiser), synchronised wall clock, mean of ``--phase-steps`` steps
  after 5 warm-up steps, for ours and for the GON.py re-statement: only the data phase differs,
  which bounds what a faster loop can gain (the report's speed section shows the bound);
* **validation cost**: seconds to score ``--eval-images`` validation images with the library's
  evaluation (:func:`repro.evaluate.mean_mse_per_pixel`, as fit scores its curves) against the
  training forward with a graph built and thrown away, and (AE) under ``torch.inference_mode``.

    python bench/profile_step.py
    python bench/profile_step.py --device cuda

Output: ``--out`` (default reports/benchmarks.json), ``profile`` merged by device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _loops import Setting, make_loader, make_pil_dataset, run_ours, setting_for
from _speedlib import (
    configure,
    last_json,
    parse,
    parser,
    prepared_data,
    report_header,
    run_child,
    sync,
    write_report,
)
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from repro.config import load_params
from repro.encoders import gon_training_loss, sse_per_image
from repro.evaluate import mean_mse_per_pixel
from repro.train import to_unit_float

PHASES = ("data", "inner_forward", "inner_grad", "outer_forward", "outer_backward", "optimizer")
WARM = 5  # untimed steps before the phase breakdown


def baseline_phases(setting: Setting, model, blob, order: torch.Tensor, device) -> Callable:
    """GON.py's step up to its backward, a ``mark()`` after each phase."""
    dec = model.decoder
    size = blob["images32"].shape[-1]
    dataset = make_pil_dataset(blob["images28"], blob["labels"], size)
    loader = make_loader(dataset, setting.batch, order, 0)

    def cycle():  # GON.py's endless iterator over its DataLoader
        while True:
            yield from loader

    batches = cycle()

    def step(step: int, opt, mark: Callable[[], None]) -> None:
        x, t = next(batches)
        x, t = x.to(device), t.to(device)
        mark()
        z = torch.zeros(x.shape[0], setting.nz, 1, 1).to(device).requires_grad_()
        inner = ((dec(z) - x) ** 2).sum(1).mean()
        mark()
        grad = torch.autograd.grad(inner, [z], create_graph=True, retain_graph=True)[0]
        z = -grad
        mark()
        loss = ((dec(z) - x) ** 2).sum(1).mean()
        mark()
        opt.zero_grad()
        loss.backward()
        mark()

    return step


def ours_phases(setting: Setting, model, blob, order: torch.Tensor, device) -> Callable:
    """fit's GON step up to its backward, a ``mark()`` after each phase."""
    enc, dec = model.encoder, model.decoder
    data, dev_order = blob["images32"].to(device), order.to(device)
    b, n = setting.batch, blob["images32"].shape[0]

    def step(step: int, opt, mark: Callable[[], None]) -> None:
        i = step % (n // b)
        x = to_unit_float(data[dev_order[i * b : (i + 1) * b]])
        mark()
        z0 = torch.zeros(x.shape[0], enc.nz, 1, 1, device=device, requires_grad=True)
        inner = enc.inner_loss(dec, z0, x)
        mark()
        (grad,) = torch.autograd.grad(inner, z0, create_graph=True)
        z = z0 - enc.step_size * grad
        mark()
        loss = gon_training_loss(dec(z), x)
        mark()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mark()

    return step


def phase_breakdown(setting: Setting, blob, device, steps: int, variant: str) -> dict[str, float]:
    """Mean milliseconds per GON step spent in each phase (perf_counter, synchronised)."""
    torch.manual_seed(0)
    model = setting.make_model().to(device)
    opt = setting.make_optimizer(model)
    order = torch.randperm(blob["images32"].shape[0], generator=torch.Generator().manual_seed(0))
    phases = baseline_phases if variant == "baseline" else ours_phases
    one_step = phases(setting, model, blob, order, device)
    totals = dict.fromkeys(PHASES, 0.0)
    model.train()
    for step in range(steps + WARM):
        marks = [time.perf_counter()]

        def mark(marks: list[float] = marks) -> None:
            sync(device)
            marks.append(time.perf_counter())

        one_step(step, opt, mark)
        opt.step()
        mark()
        if step >= WARM:
            for phase, a, c in zip(PHASES, marks[:-1], marks[1:], strict=True):
                totals[phase] += c - a
    out = {p: v / steps * 1e3 for p, v in totals.items()}
    out["total"] = sum(out.values())
    return out


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def eval_costs(params, blob, device: torch.device, images: int) -> dict[str, dict[str, float]]:
    """Seconds to score ``images`` validation images: the library's evaluation vs wasteful ones.

    ``library``: :func:`repro.evaluate.mean_mse_per_pixel` as ``fit`` scores the curves (a frozen
    copy, ``no_grad``; the GON latent's inner gradient is taken without ``create_graph``).
    ``graph``: the training forward with grad enabled (``create_graph=True``, parameters
    requiring grad), the graph thrown away. ``inference_mode`` (AE only: GON needs autograd for
    its latent): the training-mode forward under ``torch.inference_mode``.
    """
    x_all = blob["images32"][:images].to(device)
    b = params.evaluate.batch_size
    out: dict[str, dict[str, float]] = {}
    for method in ("gon", "ae"):
        torch.manual_seed(0)
        model = setting_for(method, params).make_model().to(device)

        def graph(model: torch.nn.Module = model) -> None:
            model.train()
            for s in range(0, len(x_all), b):
                x = to_unit_float(x_all[s : s + b])
                sse_per_image(model(x)[1], x).sum().item()

        def library(model: torch.nn.Module = model) -> None:
            mean_mse_per_pixel(model, x_all, batch_size=b, bn_mode=params.evaluate.headline_bn)

        out[method] = {"library": timed(library, device), "graph": timed(graph, device)}
        if method == "ae":
            out[method]["inference_mode"] = timed(torch.inference_mode()(graph), device)
    return out


def top_ops(opts: dict[str, Any], setting: Setting, blob, device) -> dict[str, Any]:
    """torch.profiler over ``opts['profile_steps']`` steps of ours (GON) after 5 warm-up ones."""
    torch.manual_seed(0)
    model = setting.make_model().to(device)
    opt = setting.make_optimizer(model)
    data = blob["images32"].to(device)
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0)).to(device)
    run_ours(setting, model, opt, data, order, 5)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = opts["profile_steps"]
    with torch_profile(activities=activities) as prof:
        run_ours(setting, model, opt, data, order, steps)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"== torch.profiler: ours, GON, {steps} steps, sorted by {sort} ==")
    print(prof.key_averages().table(sort_by=sort, row_limit=opts["top"]))
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, sort), reverse=True)
    top = []
    for evt in events[: opts["top"]]:
        row = {
            "op": evt.key,
            "calls_per_step": evt.count / steps,
            "self_cpu_ms_per_step": evt.self_cpu_time_total / 1e3 / steps,
        }
        if device.type == "cuda":
            row["self_device_ms_per_step"] = evt.self_device_time_total / 1e3 / steps
        top.append(row)
    total_self = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3 / steps
    return {
        "profile_steps": steps,
        "profiled_self_cpu_ms_per_step": total_self,
        "top_ops": top,
        "top_ops_sorted_by": sort,
    }


def profile(opts: dict[str, Any]) -> dict[str, Any]:
    """The top ops of a GON step of ours, the per-phase breakdown of both loops, the cost of
    scoring validation images (the child's work)."""
    device = torch.device(opts["device"])
    configure(opts, device)
    blob = torch.load(opts["data"], weights_only=True)
    params = load_params(Path(opts["params"]))
    setting = setting_for("gon", params)
    ops = top_ops(opts, setting, blob, device)
    breakdown = {
        v: phase_breakdown(setting, blob, device, opts["phase_steps"], v)
        for v in ("ours", "baseline")
    }
    evals = eval_costs(params, blob, device, opts["eval_images"])
    print(f"\n== seconds to score {opts['eval_images']} validation images ==")
    for method, row in evals.items():
        print(method, ", ".join(f"{k} {v:.3f} s" for k, v in row.items()))
    print(f"\n== per-phase milliseconds per GON step (mean of {opts['phase_steps']} steps) ==")
    print(f"{'phase':16s} {'ours':>9s} {'baseline':>9s}")
    for phase in (*PHASES, "total"):
        print(f"{phase:16s} {breakdown['ours'][phase]:9.2f} {breakdown['baseline'][phase]:9.2f}")
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        **ops,
        "phases_ms_per_step": breakdown,
        "eval_seconds": evals,
        "eval_images": opts["eval_images"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument(
        "--images",
        type=int,
        default=6400,
        help="images the steps are drawn from (at least --eval-images)",
    )
    ap.add_argument("--threads", type=int, default=None, help="default: train.num_threads")
    ap.add_argument("--steps", type=int, default=20, help="steps under torch.profiler")
    ap.add_argument("--phase-steps", type=int, default=60, help="steps timed by phase")
    ap.add_argument("--top", type=int, default=15, help="operators listed")
    ap.add_argument("--eval-images", type=int, default=1000, help="validation images scored")
    args = parse(ap, argv)
    if args.threads is None:
        args.threads = load_params(args.params).train.num_threads
    update = report_header(args.device, args.threads)
    with prepared_data(args, max(args.images, args.eval_images)) as data_path:
        opts = {
            "device": args.device,
            "data": str(data_path),
            "params": str(args.params),
            "threads": args.threads,
            "deterministic": True,
            "profile_steps": args.steps,
            "phase_steps": args.phase_steps,
            "eval_images": args.eval_images,
            "top": args.top,
        }
        stdout = run_child("profile_step:profile", opts)
    print(stdout.rsplit("\n", 1)[0])
    update["profile"] = {args.device: last_json(stdout)}
    write_report(args.out, update)


if __name__ == "__main__":
    main()
