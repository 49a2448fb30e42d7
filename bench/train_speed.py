"""Benchmark: our training loop against a re-statement of the original GON.py loop.

In one invocation and on the same data, device and initial weights, this times one training
epoch of

* **baseline**: the loop of the public ``GON.py`` (cwkx/GON), re-stated in ``_loops.py``: PIL
  images through torchvision's ``Resize(32)`` + ``ToTensor()``, a ``DataLoader(batch_size=64,
  drop_last=True)``, per-step ``.to(device)``, GON.py's loss expressions, ``loss.item()`` every
  100 steps, torch's default thread count;
* **ours**: the exact loop body of :func:`repro.train.fit` (data resident as one uint8 tensor,
  a batch is an index, :func:`repro.train.to_unit_float`, the library model and loss, Adam);
* **fit**: :func:`repro.train.fit` itself on a 2-epoch run over the same images; its
  ``history`` ``seconds`` of epoch 2 (warm; validation scoring excluded by ``fit``) is reported
  as ``fit_epoch_s``.

Methods: ``gon`` and ``ae`` at the ``model``/``train`` settings of params.yaml, and ``gfe``: one
step of the data-efficiency study (``gfe_adaptive``, MLP decoder, batch 16, RMSprop, BCE; the
loop of :func:`repro.efficiency.train_efficiency_run`) against the same step fed by a DataLoader
over PIL images with ``num_workers=2`` (``--gfe-workers``), as the public GFE code
(k-flouris/gfe) loads MNIST (it uses ``ToTensor()`` at 28x28; here ``Resize(32)`` is kept so both
variants train on the same 32x32 images). For GFE the loop is not where the time goes: one step
runs about 115 decoder gradient evaluations, so the ratio is expected near 1.

Fair comparison: same seed (same initial weights), same permutation, so the final losses must
agree up to the resize difference (PIL's 8-bit fixed-point bilinear vs our float antialiased
interpolate rounded to uint8, at most one grey level per pixel; see tests/test_bench.py).
Each (method, variant, repetition) runs in a fresh process (``_measure.measure``) so that its
peak resident memory (``VmHWM``) is its own; repetitions are interleaved (baseline, ours, fit,
baseline, ...) and the median is reported, with the 1-minute load average around each and the
share of the CPUs that *other* processes used during the timed epoch (from /proc/stat).

    python bench/train_speed.py --methods gon,ae,gfe --reps 5 --warmup 20
    python bench/train_speed.py --device cuda --methods gon,ae,gfe

Output: ``--out`` (default reports/benchmarks.json), ``benchmarks`` merged by (name, device):
name, device, ours, baseline, unit, ratio = baseline / ours, plus steps/s, peak memory, thread
settings, load; the table is also printed.

Data: ``--data-dir`` (default data) holds the canonical 32x32 tensors of the data stage; the
28x28 originals come from ``--raw-dir`` (default data/raw: the idx files or MNIST's
``mnist.pkl.gz``), decoded by the data module's verified readers. The first ``--images`` training
images are used; the script checks that our resize of the 28x28 originals gives exactly the
canonical 32x32 tensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _measure import add_measure_args, base_opts, parse_methods
from _speedlib import med, parse, parser, prepared_data, report_header, spawn, write_report

from repro.config import load_params


def summarise(
    name: str,
    device: str,
    unit: str,
    ours: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """One ``benchmarks`` entry: medians of ours and the baseline, their ratio, the conditions."""
    o, b = med(ours, "seconds"), med(baseline, "seconds")
    entry = {
        "name": name,
        "device": device,
        "ours": o,
        "baseline": b,
        "unit": unit,
        "ratio": b / o,
        "steps_per_s_ours": med(ours, "steps_per_s"),
        "steps_per_s_baseline": med(baseline, "steps_per_s"),
        "seconds_ours_all": [r["seconds"] for r in ours],
        "seconds_baseline_all": [r["seconds"] for r in baseline],
        "peak_rss_mib_ours": med(ours, "peak_rss_mib"),
        "peak_rss_mib_baseline": med(baseline, "peak_rss_mib"),
        "train_rss_mib_ours": med(ours, "peak_rss_mib") - med(ours, "rss_start_mib"),
        "train_rss_mib_baseline": med(baseline, "peak_rss_mib") - med(baseline, "rss_start_mib"),
        "threads_ours": ours[0]["threads"],
        "threads_baseline": baseline[0]["threads"],
        "interop_threads_ours": ours[0]["interop_threads"],
        "deterministic_ours": ours[0]["deterministic"],
        "last_loss_ours": ours[0]["last_loss"],
        "last_loss_baseline": baseline[0]["last_loss"],
        "load1_range": [
            min(r["load1_before"] for r in ours + baseline),
            max(r["load1_after"] for r in ours + baseline),
        ],
        "others_cpu_share_max": max(r.get("others_cpu_share", 0.0) for r in ours + baseline),
        "own_cpu_per_wall_ours": med(ours, "own_cpu_per_wall"),
        "own_cpu_per_wall_baseline": med(baseline, "own_cpu_per_wall"),
        "reps": len(ours),
    }
    if "cuda_peak_mib" in ours[0]:
        entry["cuda_peak_mib_ours"] = med(ours, "cuda_peak_mib")
        entry["cuda_peak_mib_baseline"] = med(baseline, "cuda_peak_mib")
    if any(r.get("worker_peak_rss_mib") for r in baseline):
        entry["worker_peak_rss_mib_baseline"] = med(baseline, "worker_peak_rss_mib")
    entry.update(extra)
    return entry


def variants_of(method: str, args: argparse.Namespace, data_path: Path) -> dict[str, dict]:
    """The measurement options of the baseline, ours and (GON, AE) fit for ``method``."""
    base = base_opts(method, args, data_path)
    ours = base | {
        "variant": "ours",
        "threads": args.threads,
        # configure_torch enforces it on CPU (fit and pipelines/efficiency.py alike)
        "deterministic": True,
    }
    variants = {
        "baseline": base | {"variant": "baseline", "threads": args.baseline_threads},
        "ours": ours,
    }
    if method in ("gon", "ae") and not args.no_fit:
        variants["fit"] = ours | {"variant": "fit"}
    return variants


def run_reps(method: str, variants: dict[str, dict], reps: int) -> dict[str, list[dict]]:
    """``reps`` interleaved repetitions of every variant, each in its own process."""
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    for rep in range(reps):
        for key, opts in variants.items():
            r = spawn("_measure:measure", opts)
            results[key].append(r)
            print(
                f"{method} {key:8s} rep {rep + 1}: {r['seconds']:.3f} s "
                f"({r['steps_per_s']:.2f} steps/s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                f"threads {r['threads']}, load {r['load1_before']:.2f}, "
                f"others {r.get('others_cpu_share', float('nan')):.0%} of the CPUs)",
                flush=True,
            )
    return results


def table_entry(method: str, results: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    """The ``benchmarks`` entry of ``method``: :func:`summarise` plus the unit, fit and GFE facts."""
    n = results["ours"][0]["images"]
    batch = n // results["ours"][0]["steps"]
    unit = f"s per epoch ({n:,} images, batch {batch})"
    if method == "gfe":
        unit = f"s per {n:,} images (batch {batch}, drawn from the first {args.gfe_pool} images)"
    extra: dict[str, Any] = {"images": n, "batch": batch, "device_name": args.device_name}
    if "fit" in results:
        extra["fit_epoch_s"] = med(results["fit"], "seconds")
        extra["fit_epoch_s_all"] = [r["seconds"] for r in results["fit"]]
        extra["ratio_fit"] = extra["fit_epoch_s"] and (
            med(results["baseline"], "seconds") / extra["fit_epoch_s"]
        )
        extra["peak_rss_mib_fit"] = med(results["fit"], "peak_rss_mib")
    if method == "gfe":
        extra["baseline_loader_workers"] = args.gfe_workers
        extra["nfe_ours"] = [r["nfe"] for r in results["ours"]]
        extra["nfe_baseline"] = [r["nfe"] for r in results["baseline"]]
    return summarise(
        f"{method}_epoch", args.device, unit, results["ours"], results["baseline"], extra
    )


def print_table(entries: list[dict[str, Any]]) -> None:
    """The ``benchmarks`` entries as a fixed-width table."""
    head = (
        f"{'benchmark':12s} {'device':6s} {'ours s':>8s} {'base s':>8s} {'ratio':>6s} "
        f"{'ours st/s':>9s} {'base st/s':>9s} {'fit s':>7s} {'RSS ours':>9s} {'RSS base':>9s} "
        f"{'thr o/b':>7s}"
    )
    print(head)
    for e in entries:
        fit = e.get("fit_epoch_s")
        print(
            f"{e['name']:12s} {e['device']:6s} {e['ours']:8.3f} {e['baseline']:8.3f} "
            f"{e['ratio']:6.2f} {e['steps_per_s_ours']:9.2f} {e['steps_per_s_baseline']:9.2f} "
            f"{(f'{fit:7.3f}' if fit else '      -')} {e['peak_rss_mib_ours']:9.0f} "
            f"{e['peak_rss_mib_baseline']:9.0f} {e['threads_ours']:>3d}/{e['threads_baseline']:<3d}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    add_measure_args(ap)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ours: torch intra-op threads (default: train.num_threads of params.yaml, as fit)",
    )
    ap.add_argument(
        "--baseline-threads", type=int, default=0, help="baseline threads (0: torch default)"
    )
    ap.add_argument("--no-fit", action="store_true", help="skip the repro.train.fit variant")
    args = parse(ap, argv)
    params = load_params(args.params)
    parse_methods(ap, args, params)
    if args.threads is None:
        args.threads = params.train.num_threads
    update = report_header(args.device, args.threads)
    args.device_name = update["machine"]["device_name"]
    with prepared_data(args, max(args.images, args.gfe_pool)) as data_path:
        update["benchmarks"] = [
            table_entry(m, run_reps(m, variants_of(m, args, data_path), args.reps), args)
            for m in args.methods
        ]
    print_table(update["benchmarks"])
    write_report(args.out, update)


if __name__ == "__main__":
    main()
