"""Benchmark: which options make our training loop faster (thread counts, flags, torch.compile)?

Times one epoch of ours (fit's loop body, ``_loops.run_ours``) under named option sets, each
against the first entry of its group, in the same invocation and on the same images; the
``threads`` group also times the GON.py re-statement (``baseline``) at 1 and 2 threads. Each
(configuration, repetition) runs in a fresh process (``_measure.measure``); repetitions are
interleaved and the median is reported. ``--contend N`` runs N busy-looping processes alongside,
a stand-in for a shared machine.

Groups (:data:`EXPERIMENTS`): ``threads`` (intra-/inter-op threads of ours and the baseline),
``omp`` (``OMP_WAIT_POLICY``), ``flags`` / ``flags2`` (at 1 / 2 threads: determinism,
``fill_uninitialized_memory``, channels_last, mkldnn off, ELU through ``exp``, fused Adam),
``compile`` (``torch.compile`` of the forward + loss).

    python bench/speed_options.py --methods gon --experiments threads,flags --images 2560
    python bench/speed_options.py --methods gon --experiments omp --contend 1

Output: ``--out`` (default reports/benchmarks.json), ``experiments`` merged by (name, device):
seconds, speed-up against the group's first entry, peak memory, load; a configuration that
fails is recorded with its error.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _measure import add_measure_args, base_opts, images_for, parse_methods
from _speedlib import med, parse, parser, prepared_data, report_header, spawn, write_report

from repro.config import load_params


def _ours(threads: int, label: str = "", **options: Any) -> tuple[str, dict[str, Any]]:
    """(label, options) of ours at ``threads`` threads with ``options``."""
    name = f"ours threads={threads}" + (f" {label}" if label else "")
    return name, {"variant": "ours", "threads": threads, **options}


#: The flags of the ``flags`` groups: label -> options of ours.
FLAGS: dict[str, dict[str, Any]] = {
    "deterministic=off": {"deterministic": False},
    "fill_uninitialized_memory=off": {"fill_uninitialized": False},
    "channels_last": {"channels_last": True},
    "mkldnn=off": {"mkldnn": False},
    "exp_elu": {"exp_elu": True},
    "fused_adam": {"fused_adam": True},
}
#: The flags the ``flags2`` group times at 2 threads, one at a time and then these three together.
FLAGS2 = ("fill_uninitialized_memory=off", "channels_last", "exp_elu", "fused_adam")
ALL2 = FLAGS["fill_uninitialized_memory=off"] | FLAGS["exp_elu"] | FLAGS["fused_adam"]

#: Named option sets for ``--experiments`` (each a list of (label, child options)). "ours" is
#: the library loop; "baseline" the GON.py re-statement.
EXPERIMENTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "threads": [
        _ours(1),
        _ours(2),
        _ours(2, "interop=1", interop=1),
        ("baseline threads=1", {"variant": "baseline", "threads": 1}),
        ("baseline threads=2", {"variant": "baseline", "threads": 2}),
    ],
    "flags": [_ours(1)] + [_ours(1, label, **opts) for label, opts in FLAGS.items()],
    "flags2": [_ours(2)]
    + [_ours(2, label, **FLAGS[label]) for label in FLAGS2]
    + [_ours(2, "all (no fill, exp_elu, fused_adam)", **ALL2)],
    "omp": [
        _ours(1),
        _ours(2),
        _ours(2, "OMP_WAIT_POLICY=PASSIVE", env={"OMP_WAIT_POLICY": "PASSIVE"}),
        _ours(2, "OMP_WAIT_POLICY=ACTIVE", env={"OMP_WAIT_POLICY": "ACTIVE"}),
    ],
    "compile": [_ours(1), _ours(1, "compile", compile="step")],
}


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[None]:
    """``n`` busy-looping processes for the duration of the block (a shared machine)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.wait()


def sweep(method: str, group: str, base: dict[str, Any], reps: int) -> dict[str, list[dict]]:
    """``reps`` interleaved repetitions of every configuration of ``group``; a failed one is
    recorded as ``{"error": ...}`` and the sweep goes on."""
    configs = EXPERIMENTS[group]
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in configs}
    for rep in range(reps):
        for label, opts in configs:
            o = base | opts
            if o["variant"] == "baseline":
                o["deterministic"] = False  # GON.py sets no flags
            try:
                r = spawn("_measure:measure", o)
            except RuntimeError as err:
                print(f"{method} {label}: FAILED\n{err}", flush=True)
                results[label].append({"error": str(err)[-1500:]})
                continue
            results[label].append(r)
            print(
                f"{method} {label:45s} rep {rep + 1}: {r['seconds']:.3f} s "
                f"(load {r['load1_before']:.2f}, "
                f"others {r.get('others_cpu_share', float('nan')):.0%} of the CPUs)",
                flush=True,
            )
    return results


def entries(method: str, group: str, results: dict[str, list[dict]], args) -> list[dict]:
    """One ``experiments`` entry per configuration of ``group``, speed-up vs the first one."""
    ref_label = EXPERIMENTS[group][0][0]
    ref = med([r for r in results[ref_label] if "seconds" in r], "seconds")
    suffix = f" [{args.contend} busy process(es)]" if args.contend else ""
    out = []
    for label, opts in EXPERIMENTS[group]:
        ok = [r for r in results[label] if "seconds" in r]
        entry: dict[str, Any] = {
            "name": f"{method} [{group}] {label}{suffix}",
            "device": args.device,
            "group": group,
            "options": opts,
            "busy_processes": args.contend,
            "images": images_for(method, args),
        }
        if ok:
            s = med(ok, "seconds")
            entry |= {
                "seconds": s,
                "seconds_all": [r["seconds"] for r in ok],
                "steps_per_s": med(ok, "steps_per_s"),
                "peak_rss_mib": med(ok, "peak_rss_mib"),
                "speedup_vs": f"{method} [{group}] {ref_label}{suffix}",
                "speedup": ref / s,
                "last_loss": ok[0]["last_loss"],
                "load1_range": [
                    min(r["load1_before"] for r in ok),
                    max(r["load1_after"] for r in ok),
                ],
                "others_cpu_share_max": max(r.get("others_cpu_share", 0.0) for r in ok),
            }
        errors = [r["error"] for r in results[label] if "error" in r]
        if errors:
            entry["error"] = errors[0]
        out.append(entry)
    return out


def run_experiments(args: argparse.Namespace, data_path: Path) -> list[dict[str, Any]]:
    """Every (method, group) sweep, with ``--contend`` busy processes alongside."""
    out = []
    with busy_processes(args.contend):
        for method in args.methods:
            base = base_opts(method, args, data_path) | {"deterministic": True}
            for group in args.experiments:
                out += entries(method, group, sweep(method, group, base, args.reps), args)
    for e in out:
        if "seconds" in e:
            print(
                f"{e['name']:55s} {e['seconds']:8.3f} s  speed-up {e['speedup']:.2f}  "
                f"(vs {e['speedup_vs']})"
            )
        else:
            print(f"{e['name']:55s} FAILED: {e.get('error', '')[-300:]}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    add_measure_args(ap)
    ap.add_argument("--experiments", default="threads", help=f"comma list of {list(EXPERIMENTS)}")
    ap.add_argument("--contend", type=int, default=0, help="run N busy-looping processes alongside")
    args = parse(ap, argv)
    params = load_params(args.params)
    parse_methods(ap, args, params)
    args.experiments = [e for e in args.experiments.split(",") if e]
    for e in args.experiments:
        if e not in EXPERIMENTS:
            ap.error(f"unknown experiment group {e!r}; allowed: {list(EXPERIMENTS)}")
    update = report_header(args.device, params.train.num_threads)
    with prepared_data(args, max(args.images, args.gfe_pool)) as data_path:
        update["experiments"] = run_experiments(args, data_path)
    write_report(args.out, update)


if __name__ == "__main__":
    main()
