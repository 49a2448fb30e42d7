"""Benchmark: the decoder gradient of GFE computed three ways, on the same decoder and batch.

"The costly adjoint integrals are not entirely necessary" (GFE, docs/protocol.md §4) gets a
measured answer: for one batch of real test images, the decoder gradient by backprop through the
solver, by the adjoint method and by the "approximate" detached latent, their cosine similarity
and relative difference against backprop, and the time and peak memory of each. Each mode runs
in its own process so that its peak resident memory (ru_maxrss) is its own.

    python bench/gfe_gradients.py --decoder runs/efficiency/mnist/gfe_adaptive-n1000-s0/model.pt

Defaults: the GFE code's MLP decoder (nz 20), a batch of 16 MNIST test images, the first-order
flow with dopri5 (rtol = atol = 1e-3) to tau = 20, BCE; writes reports/bench_gfe_gradients.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from repro.io import write_json

MODES = ("backprop", "adjoint", "approximate")


def one_mode(args: argparse.Namespace) -> dict:
    from repro.data import load_split
    from repro.encoders import Architecture
    from repro.flows import GradientFlowEncoder, per_sample_loss
    from repro.io import load_torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, _ = load_split(Path(args.data_dir) / args.dataset, "test")
    decoder = Architecture(args.architecture, nz=args.nz, image_size=images.shape[-1]).decoder()
    if args.decoder:  # a decoder trained by the pipeline (an efficiency run's model.pt)
        state = load_torch(args.decoder)["state_dict"]
        decoder.load_state_dict(
            {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
        )
    x = images[: args.batch].float() / 255.0
    enc = GradientFlowEncoder(
        args.nz,
        flow="first_order",
        loss="bce",
        tau=args.tau,
        solver=args.solver,
        rtol=args.rtol,
        atol=args.rtol,
        grad_mode=args.mode,
        max_nfe=100_000,
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    z = enc(x, decoder, create_graph=True)
    per_sample_loss("bce", decoder(z), x).sum().backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grad = torch.cat([p.grad.flatten() for p in decoder.parameters()])
    return {
        "mode": args.mode,
        "seconds": seconds,
        "peak_rss_mib": peak / 1024,
        "rss_growth_mib": (peak - before) / 1024,
        "forward_nfe": enc.last_stats.nfe,
        "grad": grad.tolist(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default="data", help="where the data stage wrote the datasets")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--architecture", default="mlp", choices=["mlp", "conv"])
    p.add_argument(
        "--decoder", default="", help="model.pt of a trained run (default: untrained decoder)"
    )
    p.add_argument("--nz", type=int, default=20)
    p.add_argument("--tau", type=float, default=20.0)
    p.add_argument("--solver", default="dopri5")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per mode")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--out", default="reports/bench_gfe_gradients.json")
    args = p.parse_args()
    if args.mode:
        print(json.dumps(one_mode(args)))
        return
    results = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode] + [
            f"--{k.replace('_', '-')}={v}"
            for k, v in vars(args).items()
            if k not in ("mode", "out", "timeout")
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=args.timeout)
        out = proc.stdout.strip().splitlines()[-1]
        results[mode] = json.loads(out)
    ref = torch.tensor(results["backprop"]["grad"], dtype=torch.float64)
    rows = []
    for mode in MODES:
        g = torch.tensor(results[mode].pop("grad"), dtype=torch.float64)
        results[mode]["cosine_vs_backprop"] = float(
            torch.nn.functional.cosine_similarity(g, ref, dim=0)
        )
        results[mode]["relative_difference_vs_backprop"] = float((g - ref).norm() / ref.norm())
        rows.append(results[mode])
    report = {
        "benchmark": "gfe_decoder_gradients",
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("mode", "out", "timeout")},
        "results": rows,
    }
    write_json(args.out, report)  # atomic: a killed benchmark never leaves half a file
    for r in rows:
        print(
            f"{r['mode']:12s} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB  nfe {r['forward_nfe']:5d}  "
            f"cos {r['cosine_vs_backprop']:.4f}  rel.diff {r['relative_difference_vs_backprop']:.4f}"
        )


if __name__ == "__main__":
    main()
