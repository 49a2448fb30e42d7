"""Benchmark: what torch.compile does to a GON and an AE training step (speed, or the error).

Applies ``torch.compile`` in several ways to one training step of ours on one real batch of 64
images, in a fresh process at 1 thread, and records for each variant its first loss, the time of
the first (compiling) step and milliseconds per step, or the error verbatim (paths made relative):

* ``eager``: no compilation (the reference);
* ``compile(forward+loss)``: the forward and loss compiled, backward and Adam eager;
* ``compile(forward+loss, fullgraph=True)``: the same, graph breaks refused;
* ``compile(decoder module)``: only the decoder compiled;
* GON written with ``torch.func`` (the inner gradient part of the traced forward), eager and
  compiled.

For GON the compiled first loss is compared with eager's (``first_loss_rel_diff_vs_eager``), and
the decoder's output eager vs compiled at the origin and at a random latent in train-mode
BatchNorm shows why they differ: D(0) normalises a constant batch.

    python bench/compile_check.py
    python bench/compile_check.py --device cuda

Output: ``--out`` (default reports/benchmarks.json), ``compile`` merged by device.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _loops import loss_step, ours_loss, setting_for
from _measure import compiled_step
from _speedlib import (
    configure,
    machine_free,
    parse,
    parser,
    prepared_data,
    report_header,
    spawn,
    sync,
    write_report,
)
from torch import _dynamo
from torch.func import functional_call, grad

from repro.config import load_params
from repro.encoders import gon_training_loss, sse_per_image

BATCH = 64  # one real batch, params.yaml's train.batch_size


def eager(setting, model, opt) -> Callable:
    """Ours as fit runs it (the reference)."""
    return loss_step(lambda x: ours_loss(setting, model, x), opt)


def whole_loss(setting, model, opt) -> Callable:
    """The forward + loss compiled (what ``speed_options.py --experiments compile`` times)."""
    return compiled_step(setting, model, opt)


def fullgraph(setting, model, opt) -> Callable:
    """The forward + loss compiled as one graph (a graph break is an error)."""
    return loss_step(torch.compile(lambda x: ours_loss(setting, model, x), fullgraph=True), opt)


def decoder_only(setting, model, opt) -> Callable:
    """Only the decoder module compiled; the latent's gradient stays eager autograd."""
    model.decoder = torch.compile(model.decoder)
    return eager(setting, model, opt)


def func_step(compile_it: bool) -> Callable:
    """GON written with torch.func: the inner gradient is part of the traced forward."""

    def make(setting, model, opt) -> Callable:
        dec, enc = model.decoder, model.encoder
        p, b = dict(dec.named_parameters()), dict(dec.named_buffers())

        def inner(p, b, z, x):
            pixels = x.shape[-1] * x.shape[-2]
            return sse_per_image(functional_call(dec, (p, b), (z,)), x).sum() / (
                enc.inner_norm * pixels
            )

        def loss_fn(p, b, x):
            z0 = torch.zeros(x.shape[0], enc.nz, 1, 1, device=x.device, dtype=x.dtype)
            z = z0 - enc.step_size * grad(inner, argnums=2)(p, b, z0, x)
            return gon_training_loss(functional_call(dec, (p, b), (z,)), x)

        fn = torch.compile(loss_fn) if compile_it else loss_fn
        return loss_step(lambda x: fn(p, b, x), opt)

    return make


def attempt(method: str, make_step: Callable, params, x, device, steps: int) -> dict:
    """One variant's first loss, first-step seconds and ms per step, or its error."""
    setting = setting_for(method, params)
    torch.manual_seed(0)
    model = setting.make_model().to(device)
    opt = setting.make_optimizer(model)
    record: dict[str, Any] = {"method": method}
    try:
        step = make_step(setting, model, opt)
        t0 = time.perf_counter()
        record["first_loss"] = float(step(x))
        sync(device)
        record["first_step_s"] = time.perf_counter() - t0
        for _ in range(3):
            step(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x)
        sync(device)
        record["ms_per_step"] = (time.perf_counter() - t0) / steps * 1e3
        record["status"] = "ok"
    except Exception as err:  # the finding is the error itself
        record["status"] = "error"
        record["error_type"] = f"{type(err).__module__}.{type(err).__name__}"
        record["error"] = machine_free(str(err).strip())[:1500]
        tail = traceback.format_exc().strip().splitlines()[-6:]
        record["traceback_tail"] = [machine_free(line) for line in tail]
    return record


def bn_drift(params, device: torch.device) -> dict[str, float]:
    """Why the compiled GON loss differs: D(0) in train-mode BatchNorm normalises a constant."""
    setting = setting_for("gon", params)
    torch.manual_seed(0)
    dec = setting.make_model().decoder.to(device).train()
    compiled = torch.compile(dec)
    with torch.no_grad():
        z0 = torch.zeros(BATCH, setting.nz, 1, 1, device=device)
        z1 = torch.randn(BATCH, setting.nz, 1, 1, device=device)
        return {
            "max_abs_diff_at_origin": float((dec(z0) - compiled(z0)).abs().max()),
            "max_abs_diff_at_random_z": float((dec(z1) - compiled(z1)).abs().max()),
        }


def compile_check(opts: dict[str, Any]) -> dict[str, Any]:
    """Apply torch.compile to one GON and one AE step; record what happens (errors verbatim)."""
    device = torch.device(opts["device"])
    configure(opts, device)
    params = load_params(Path(opts["params"]))
    blob = torch.load(opts["data"], weights_only=True)
    x = blob["images32"][:BATCH].to(device).float().div_(255.0)  # one real batch
    variants = [
        (f"{method}: {label}", method, make)
        for method in ("gon", "ae")
        for label, make in (
            ("eager", eager),
            ("compile(forward+loss)", whole_loss),
            ("compile(forward+loss, fullgraph=True)", fullgraph),
            ("compile(decoder module)", decoder_only),
        )
    ]
    variants += [
        ("gon: torch.func formulation, eager", "gon", func_step(False)),
        ("gon: torch.func formulation, compile", "gon", func_step(True)),
    ]
    findings: dict[str, Any] = {}
    for label, method, make in variants:
        findings[label] = attempt(method, make, params, x, device, opts["compile_steps"])
        print(label, json.dumps(findings[label], indent=1)[:2000], file=sys.stderr, flush=True)
        _dynamo.reset()
    ref = findings["gon: eager"].get("first_loss")
    for label, record in findings.items():
        if label.startswith("gon") and "first_loss" in record and ref:
            record["first_loss_rel_diff_vs_eager"] = abs(record["first_loss"] - ref) / ref
    findings["gon: decoder eager vs compiled, train-mode BN"] = bn_drift(params, device)
    _dynamo.reset()
    return findings


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    args = parse(ap, argv)
    update = report_header(args.device, load_params(args.params).train.num_threads)
    with prepared_data(args, BATCH) as data_path:
        opts = {
            "device": args.device,
            "data": str(data_path),
            "params": str(args.params),
            "threads": 1,
            "compile_steps": args.steps,
        }
        update["compile"] = {args.device: spawn("compile_check:compile_check", opts, 900)}
    print(json.dumps(update["compile"], indent=1))
    write_report(args.out, update)


if __name__ == "__main__":
    main()
