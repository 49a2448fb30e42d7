"""Benchmark: train S seeds of GON together (torch.func stacking) or one model at a time?

The ablation studies train many small models of the same shape (the seeds of a cell): should
they be trained together? This measures one GON training step (inner gradient, second-order
outer gradient, Adam) for S models:

* ``sequential``: S ordinary models, one step each (what the pipeline does);
* ``stacked``: the S decoders' parameters stacked with ``torch.func.stack_module_state`` and the
  whole GON step vmapped over them (``torch.func.grad`` for the inner gradient, so the outer
  backward is still second order), one Adam over the stacked tensors.

Both do the same arithmetic; stacking only pays when one model leaves the device idle (kernel
launch overhead on a GPU). Prints milliseconds per step for S models and the speed-up; writes
JSON with ``--out``. Usage::

    python bench/stack_seeds.py --seeds 3 --steps 20 [--device cuda] [--out bench.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch
from _loops import fit_step
from _speedlib import seconds_per_step
from torch.func import functional_call, grad, stack_module_state, vmap

from repro.encoders import LatentModel, build_model, gon_training_loss, sse_per_image


def stacked_step(models: list[LatentModel], x: torch.Tensor) -> Callable[[], None]:
    """One GON step of all ``models`` at once: their decoders' parameters stacked, the step
    vmapped (``torch.func.grad`` for the inner gradient), one Adam over the stacked tensors."""
    b, nz = x.shape[1], models[0].encoder.nz
    decoders = [copy.deepcopy(m.decoder) for m in models]
    params, buffers = stack_module_state(decoders)
    base = copy.deepcopy(decoders[0]).to("meta")
    pixels = 32 * 32

    def inner(p, bufs, z, xb):
        return sse_per_image(functional_call(base, (p, bufs), (z,)), xb).sum() / (b * pixels)

    def one_model(p, bufs, xb):
        z0 = torch.zeros(xb.shape[0], nz, 1, 1, device=xb.device)
        z = -grad(inner, argnums=2)(p, bufs, z0, xb)
        return gon_training_loss(functional_call(base, (p, bufs), (z,)), xb)

    stacked_opt = torch.optim.Adam(list(params.values()), 1e-4)

    def step() -> None:
        losses = vmap(one_model)(params, buffers, x)
        stacked_opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        stacked_opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--nz", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    s, b, nz = args.seeds, args.batch, args.nz
    x = torch.rand(s, b, 1, 32, 32, device=device)

    models = []
    for seed in range(s):
        torch.manual_seed(seed)
        models.append(build_model("gon", nz=nz, inner_norm=b).to(device))
    opts = [torch.optim.Adam(m.parameters(), 1e-4) for m in models]

    def sequential() -> None:
        for i, (m, opt) in enumerate(zip(models, opts, strict=True)):
            fit_step(m, opt, x[i])

    stacked = stacked_step(models, x)
    seq_ms = seconds_per_step(sequential, 3, args.steps, 1, device) * 1000.0
    stk_ms = seconds_per_step(stacked, 3, args.steps, 1, device) * 1000.0
    result = {
        "benchmark": "stack_seeds",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seeds": s,
        "batch": b,
        "nz": nz,
        "sequential_ms_per_step_all_seeds": seq_ms,
        "stacked_ms_per_step_all_seeds": stk_ms,
        "speedup": seq_ms / stk_ms,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
