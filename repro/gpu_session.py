"""One command for a lent GPU: environment, data, GPU tests, step times, the ``gpu`` profile.

A GPU is lent here for minutes, to a machine with torch and CUDA but without mlflow, dvc or a
network, so a session must not improvise. ``bench/gpu_session.sh`` (this module) does, in order
and inside a wall-clock budget (``--budget-s``):

1. ``environment``: torch, CUDA, the GPU's name and free memory (printed and recorded);
2. ``data``: every dataset of the profile from the carried raw files (``data/raw``) through
   :func:`repro.data.prepare_dataset`, SHA-256 checks included;
3. ``gpu_tests``: ``pytest -m gpu tests/test_gpu.py`` (CPU vs GPU losses, CUDA graph == eager,
   stacked == single);
4. ``step_times``: a training step of every method × nz, eager and as a CUDA graph, and N stacked
   GON models (:mod:`repro.steptime`), for the profile's nz and the ``paper`` profile's;
5. ``train`` (:mod:`repro.session_runs`): the ``gpu`` profile's main runs through the group engine (:mod:`repro.engine`,
   :func:`repro.groups.main_run`, tracking off), at as many epochs (up to the profile's) as the
   measured step times fit in the budget; seed by seed, so that what finishes is paired;
6. ``studies``: the activation, then the multistep study, at the main runs' epochs, each only if
   its predicted time fits what is left.

After every phase it rewrites **one archive**, ``<out>/gpu_session.tar.gz`` (its layout:
:mod:`repro.session`), so a session cut off by its lease keeps what finished. The exit status is
non-zero, naming the failed phases, if any phase failed. ``repro gpu-import`` turns the archive
into ``runs/gpu/`` and ``reports/gpu/`` (:mod:`repro.gpu_import`).

``--dry-run`` runs the same code path on the CPU with a tiny synthetic dataset and a few steps
(``tests/test_gpu_session.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from repro import steptime
from repro.config import Params, load_params, params_from_dict
from repro.data import prepare_dataset
from repro.io import write_json
from repro.runtime import code_fingerprint, configure_torch, select_device
from repro.session import (
    ARCHIVE,
    LOG_FILE,
    PARAMS_FILE,
    PHASES,
    STEP_TIMES_FILE,
    TESTS_LOG,
    TESTS_XML,
    PhaseRecord,
    Session,
)
from repro.session_runs import run_studies, train_main

log = logging.getLogger("gpu_session")

#: Stacked GON models timed at nz 32 and 256 (how far one device step can be shared).
STACK_SIZES = (1, 3, 9, 27, 81)
#: At most this long for the step-time phase (a quarter of what is left, if less): the settings
#: not begun by then are recorded as not measured, so that training keeps its share.
STEP_TIMES_SECONDS = 120.0


# --- the phases -----------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "device": str(device),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "code_fingerprint": code_fingerprint(),
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        env |= {
            "gpu": torch.cuda.get_device_name(device),
            "gpu_memory_free_gib": free / 2**30,
            "gpu_memory_total_gib": total / 2**30,
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        }
    else:
        from repro.provenance import cpu_name

        env["gpu"] = None
        env["cpu"] = f"{cpu_name()}, {os.cpu_count()} logical CPUs"
    return env


def prepare_data(params: Params, raw_dir: Path) -> dict[str, Any]:
    """Each dataset from the carried raw files (the mirror source: no network here)."""
    cfg = params.data
    manifests = {}
    for name in cfg.datasets:
        manifest = prepare_dataset(
            name,
            Path("data") / name,
            raw_dir=Path("data") / "raw",
            sources=["mirror"],
            mirror_dir=raw_dir,
            image_size=cfg.image_size,
            synthetic_sizes=cfg.synthetic_sizes,
            synthetic_channels=cfg.synthetic_channels,
        )
        write_json(Path("data") / f"{name}.manifest.json", manifest)
        manifests[name] = {"source": manifest["source"], "verified": manifest["verified"]}
    return manifests


def gpu_tests(repo: Path, work: Path, timeout: float) -> tuple[str, int]:
    """``pytest -m gpu tests/test_gpu.py``; returns (summary line, exit code)."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    cmd += [f"--junitxml={work / TESTS_XML}", str(repo / "tests" / "test_gpu.py")]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])
    }
    try:
        proc = subprocess.run(
            cmd, cwd=repo, capture_output=True, text=True, timeout=timeout, env=env
        )
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        text, code = f"{err.stdout or ''}{err.stderr or ''}\ntimed out after {timeout:.0f} s", -1
    (work / TESTS_LOG).write_text(text if isinstance(text, str) else text.decode())
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output"), code


def measure_steps(session: Session, params: Params, device: torch.device) -> str:
    """Step times for the profile's and the paper profile's nz (the report projects the latter)."""
    paper = load_params(session.repo / "profiles" / "paper.yaml")
    nzs = sorted(set(params.model.nz) | set(paper.model.nz))
    methods = params.train.methods
    small, large = min(params.model.nz), max(params.model.nz)
    sizes = (1, 2) if session.dry_run else STACK_SIZES
    stacked = [("gon", nz, n) for nz in sorted({small, large}) for n in sizes]
    seeds = len(paper.train.seeds)  # the paper's cells, each one stack of its seeds
    stacked += [
        (m, nz, seeds)
        for nz in paper.model.nz
        for m in paper.train.methods
        if (m, nz, seeds) not in stacked and m in steptime.STACKABLE
    ]
    reps = {"warmup": 1, "steps": 2, "repeats": 1} if session.dry_run else {}
    times = steptime.measure(
        params,
        device,
        methods=methods,
        nzs=nzs,
        stacked=stacked,
        on_result=lambda r: log.info(
            "%-9s nz %3d %-7s x%-2d %8.2f ms/step%s",
            r.method,
            r.nz,
            r.mode,
            r.n_models,
            r.ms_per_step,
            f"  ({r.error})" if r.error else "",
        ),
        seconds=max(10.0, min(STEP_TIMES_SECONDS, session.left() / 4)),
        **reps,
    )
    session.info["step_times"] = [t.to_dict() for t in times]
    write_json(
        session.work / STEP_TIMES_FILE, {"device": str(device), "times": session.info["step_times"]}
    )
    failed = [t for t in times if t.error]
    if len(failed) == len(times):
        raise RuntimeError(f"no step could be timed; first error: {failed[0].error}")
    return f"{len(times) - len(failed)} of {len(times)} settings timed" + (
        f"; {len(failed)} could not run (see step_times.json)" if failed else ""
    )


def dry_run_params(params: Params) -> Params:
    """The same session on the CPU in seconds: a tiny synthetic dataset, tiny models, few steps."""
    d = params.to_dict()
    d["data"] |= {
        "datasets": ["synthetic"],
        "synthetic_sizes": {"train": 128, "val": 64, "test": 64},
    }
    d["model"] |= {"nz": [8], "ngf": 4}
    d["train"] |= {
        "device": "cpu",
        "cuda_graphs": False,
        "seeds": [0, 1],
        "epochs": 2,
        "batch_size": 32,
        "train_images": 128,
        "val_images": 32,
        "curve_points": 3,
        "curve_images": 32,
        "num_threads": 1,
        "workers": 1,
    }
    d["evaluate"] |= {"batch_size": 32, "val_images": None, "affinity_combinations": 2}
    d["efficiency"] |= {"dataset": "synthetic", "train_sizes": [32], "eval_images": 32}
    d["convergence"] |= {"train_size": 32, "images": 8}
    s = d["studies"]
    s |= {
        "dataset": "synthetic",
        "nz": 8,
        "seeds": [0],
        "epochs": 1,
        "train_images": 64,
        "test_images": 32,
        "curve_points": 2,
        "curve_images": 32,
    }
    s["activation"] |= {"activations": ["elu", "relu"]}
    s["multistep"] |= {"steps": [1, 2]}
    s["latent"] |= {"datasets": ["synthetic"], "nz": [8]}
    # GON's extensions are not part of the session (yet): they only need to validate here
    d["variational"] |= {"dataset": "synthetic", "train_images": 64, "test_images": 32}
    d["variational"] |= {"sample_images": 32}
    d["implicit"] |= {"datasets": ["synthetic"], "train_images": 64, "test_images": 32}
    return params_from_dict(d, "the dry run's params")


def _summary(session: Session) -> str:
    rows = [f"{'phase':<12} {'status':<8} {'seconds':>8}  detail"]
    for name in PHASES:
        rec = session.phases.get(name, PhaseRecord(name))
        rows.append(f"{name:<12} {rec.status:<8} {rec.seconds:>8.1f}  {rec.detail}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/gpu_session.sh", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or "gpu-session",
        help="where the archive goes (default: $OUT, else ./gpu-session)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=450.0,
        help="wall-clock budget of the whole session in seconds (default 450)",
    )
    parser.add_argument("--profile", default=None, help="params file (default: profiles/gpu.yaml)")
    parser.add_argument("--raw-dir", default=None, help="the carried raw files (default: data/raw)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="the same code path on the CPU: tiny synthetic data, a few steps",
    )
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="gpu-session-"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(work / LOG_FILE)],
    )
    session = Session(
        out=Path(args.out).resolve(),
        work=work,
        repo=repo,
        budget_s=args.budget_s,
        dry_run=args.dry_run,
    )
    params = load_params(Path(args.profile or repo / "profiles" / "gpu.yaml"))
    if args.dry_run:
        params = dry_run_params(params)
    session.params = params
    (work / PARAMS_FILE).write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    os.chdir(work)  # the data manifests record paths relative to the session's root
    device = select_device(params.train.device)
    configure_torch(device, params.train.num_threads, tf32=params.train.tf32)

    def env() -> str:
        if device.type != "cuda" and not args.dry_run:
            raise RuntimeError("no CUDA device here; on a CPU run with --dry-run")
        session.info["environment"] = e = environment(device)
        for k, v in e.items():
            print(f"  {k}: {v}")
        return f"{e.get('gpu') or e.get('cpu')}, torch {e['torch']}, CUDA {e['cuda']}"

    if session.phase("environment", env):
        raw = Path(args.raw_dir).resolve() if args.raw_dir else repo / "data" / "raw"
        data_ok = session.phase("data", lambda: json.dumps(prepare_data(params, raw)))
        session.phase("gpu_tests", lambda: _tests(session))
        session.phase("step_times", lambda: measure_steps(session, params, device))
        if data_ok:
            if session.phase("train", lambda: train_main(session, params)):
                session.phase("studies", lambda: run_studies(session))
    session.write_archive()
    print(_summary(session))
    failed = [p.name for p in session.phases.values() if p.status == "failed"]
    print(f"archive: {session.out / ARCHIVE}")
    if failed:
        print(
            f"error: phase(s) failed: {', '.join(failed)} (details in session.log inside the archive)",
            file=sys.stderr,
        )
        return 1
    return 0


def _tests(session: Session) -> str:
    line, code = gpu_tests(
        session.repo, session.work, timeout=max(30.0, min(180.0, session.left() / 4))
    )
    if code not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest -m gpu exited {code}: {line}")
    return line


if __name__ == "__main__":
    sys.exit(main())
