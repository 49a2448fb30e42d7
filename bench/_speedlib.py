"""What the speed scripts of bench/ share: data, machine facts, one process per measurement, JSON.

* **Data**: the first ``n`` training images as the 28x28 originals (for the GON.py re-statement,
  which resizes PIL images itself) and as the data stage's canonical 32x32 tensor (for ours),
  checked to be the same images (:func:`bench_data`), written once to a temporary file that every
  child process loads (:func:`prepared_data`).
* **Machine facts**: peak resident memory (``VmHWM``), the share of the CPUs other processes
  took, the device's name, and the thread/backend settings of a measurement (:func:`configure`).
* **One process per measurement**: :func:`run_child` runs ``bench/_child.py MODULE:FUNCTION
  JSON`` in a fresh interpreter, so each measurement has its own peak memory and thread pool;
  :func:`spawn` adds the load average around it.
* **JSON**: :func:`merge_report` merges an update into ``reports/benchmarks.json`` by (name,
  device), the file ``repro/report/sections/speed.py`` reads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from repro.io import write_json

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().with_name("_child.py")
DEFAULT_OUT = Path("reports/benchmarks.json")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_native_train(dataset: str, raw_dir: Path) -> torch.Tensor:
    """The 28x28 uint8 training images (N x 28 x 28) from the raw files the data stage used.

    Uses the data module's verified readers (SHA-256 checked): the four idx files (in
    ``raw_dir/<dataset>`` or torchvision's ``raw_dir/torchvision/<Class>/raw``), else MNIST's
    ``mnist.pkl.gz``. The study's train split is the first 50,000 of these.
    """
    from repro import data as rd

    dirs = [raw_dir / dataset]
    if dataset in rd.TORCHVISION_CLASS:
        dirs.append(raw_dir / "torchvision" / rd.TORCHVISION_CLASS[dataset] / "raw")
    for d in dirs:
        files = rd.find_idx_files(d) if d.is_dir() else None
        if files:
            return torch.from_numpy(rd.load_idx_set(dataset, files).train_images.copy())
    pickle_path = raw_dir / dataset / rd.MNIST_PICKLE
    if dataset == "mnist" and pickle_path.is_file():
        return torch.from_numpy(rd.load_mnist_pickle(pickle_path).train_images.copy())
    raise FileNotFoundError(
        f"no raw 28x28 {dataset} files under {raw_dir} (idx files or {rd.MNIST_PICKLE}); "
        "run the data stage (dvc repro) or pass --raw-dir"
    )


def bench_data(dataset: str, data_dir: Path, raw_dir: Path, n: int) -> dict[str, torch.Tensor]:
    """First ``n`` training images: 28x28 originals, the canonical 32x32 tensor and labels."""
    from repro.data import load_split, resize_to

    images32, labels = load_split(data_dir / dataset, "train")
    if n > len(images32):
        raise ValueError(f"--images {n} exceeds the {len(images32)} training images")
    images28 = load_native_train(dataset, raw_dir)[:n].contiguous()
    images32, labels = images32[:n].clone(), labels[:n].clone()
    if not torch.equal(resize_to(images28, images32.shape[-1]), images32):
        raise ValueError("the raw 28x28 images do not resize to the canonical 32x32 tensor")
    return {"images28": images28, "images32": images32, "labels": labels}


@contextlib.contextmanager
def prepared_data(args: argparse.Namespace, n: int) -> Iterator[Path]:
    """:func:`bench_data` of ``n`` images in a temporary file, for the child processes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_data.pt"
        torch.save(bench_data(args.dataset, args.data_dir, args.raw_dir, n), path)
        yield path


# --------------------------------------------------------------------------------------------
# Machine facts and timing
# --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(
    step: Callable[[], Any], warmup: int, steps: int, repeats: int, device: torch.device
) -> float:
    """Median over ``repeats`` of the mean wall time of one call of ``step``, after ``warmup``."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def configure(opts: dict[str, Any], device: torch.device) -> None:
    """Thread and backend settings of one measurement, set before any torch work."""
    if opts.get("interop"):
        torch.set_num_interop_threads(int(opts["interop"]))
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    if opts.get("deterministic") and device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    if opts.get("fill_uninitialized") is False:
        torch.utils.deterministic.fill_uninitialized_memory = False
    if opts.get("mkldnn") is False:
        torch.backends.mkldnn.enabled = False


def peak_rss_mib() -> float:
    """Peak resident memory of this process image, MiB.

    ``VmHWM`` of /proc/self/status where there is one: ``ru_maxrss`` would not do, because
    Linux carries the parent's resident size at fork over into the child's ``ru_maxrss`` across
    ``exec`` (a big parent would set every child's floor). Elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 if sys.platform != "darwin" else 1024.0**2  # Linux KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def children_peak_rss_mib() -> float:
    """Largest ``ru_maxrss`` of waited-for children (DataLoader workers: forked, so this counts
    the copy-on-write pages they share with this process too)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes of the machine used, CPU seconds this process and its waited-for
    children used), for the share of the machine other processes took during a measurement."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    mine = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return busy, mine


def others_share(before: tuple[float, float], after: tuple[float, float], wall: float) -> float:
    """Fraction of the machine's CPU capacity used by *other* processes in ``wall`` seconds."""
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / (wall * (os.cpu_count() or 1))


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model and its logical CPU count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from repro.provenance import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} logical CPUs"


def machine_free(text: str) -> str:
    """``text`` (an error, a traceback) without this machine's paths: the checkout's and the
    installed packages' directories become relative, home ``~``. benchmarks.json is committed."""
    import site
    import sysconfig

    from repro.tracking import portable

    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return portable(text, ROOT, *map(Path, packages | set(site.getsitepackages())))


def med(results: list[dict[str, Any]], key: str) -> float:
    """Median of ``key`` over the results that have it (NaN when none has)."""
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------------------------
# One process per measurement
# --------------------------------------------------------------------------------------------


def run_child(entry: str, opts: dict[str, Any], timeout: float = 600) -> str:
    """``entry`` (``module:function`` of bench/) on ``opts`` in a fresh interpreter: its own
    peak memory, its own thread pool. Returns its stdout, whose last line is the JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(opts.get("env", {}))  # e.g. OMP_WAIT_POLICY, read when the OpenMP runtime starts
    proc = subprocess.run(
        [sys.executable, str(CHILD), entry, json.dumps(opts)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0 or not proc.stdout.strip().splitlines()[-1:]:
        raise RuntimeError(f"child {opts} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def last_json(stdout: str) -> Any:
    """The JSON result a child prints as its last line."""
    return json.loads(stdout.splitlines()[-1])


def spawn(entry: str, opts: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """One measurement in its own process; its JSON result plus the load average around it."""
    load_before = os.getloadavg()[0]
    result = last_json(run_child(entry, opts, timeout))
    result["load1_before"], result["load1_after"] = load_before, os.getloadavg()[0]
    return result


# --------------------------------------------------------------------------------------------
# The command line and the JSON
# --------------------------------------------------------------------------------------------


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every speed script has: data, params, device and the JSON written."""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return ap


def parse(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options; ``--device cuda`` on a machine without one is refused (not a silent
    CPU run)."""
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    return args


def report_header(device: str, threads_ours: int) -> dict[str, Any]:
    """The top-level fields every run rewrites: machine, torch version, thread counts."""
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    return {
        "machine": {
            "device_name": device_name(torch.device(device)),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "threads": {"torch_default": torch.get_num_threads(), "ours": threads_ours},
    }


def merge_entries(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with every (name, device) that ``new`` has replaced by the new entry."""
    keys = {(e["name"], e["device"]) for e in new}
    return [e for e in old if (e.get("name"), e.get("device")) not in keys] + list(new)


def merge_report(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into the JSON at ``path`` (if any) and write it.

    Lists of entries (``benchmarks``, ``experiments``) merge by (name, device); dicts keyed by
    device (``compile``, ``profile``) merge by key; other top-level fields are replaced.
    """
    doc: dict[str, Any] = {}
    if path.is_file():
        doc = json.loads(path.read_text())
    for key, value in update.items():
        if key in ("benchmarks", "experiments"):
            doc[key] = merge_entries(doc.get(key, []), value)
        elif key in ("compile", "profile"):
            doc[key] = doc.get(key, {}) | value
        else:
            doc[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)
    return doc


def write_report(out: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into ``out`` (relative to the directory the script was started in)."""
    out = out if out.is_absolute() else Path.cwd() / out
    merge_report(out, update)
    print(f"wrote {out}")
