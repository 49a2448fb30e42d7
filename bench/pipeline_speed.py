"""The pipeline-level speed-up: one process per model against one group stage per dataset × nz.

Runs, side by side in one invocation on this machine, the main comparison of two versions of
this repository on the same reduced profile with the real ``dvc repro`` (data stage included,
MLflow tracking on, as a user runs it):

* **baseline** — a commit of the one-process-per-model pipeline (``train@<dataset>-<method>-
  <nz>-<seed>`` then ``evaluate@...``: 2 × methods × seeds stages, each a fresh Python process
  with ``train.num_threads`` threads); target ``evaluate``;
* **ours** — the working tree (``train@<dataset>-<nz>``: one stage that trains and evaluates
  every method × seed in worker processes, :mod:`repro.engine`); target ``train``.

Both copies read the raw files from ``--mirror-dir`` (no download), train the same runs (same
methods, seeds, epochs, images) and evaluate them on the whole test split. Reported per version:
the wall time of ``dvc repro``, the stages it ran, the model-steps trained and model-steps per
second (optimiser steps summed over the runs, divided by the wall time), and the ratio.

    python bench/pipeline_speed.py --baseline ce9a9e5 --mirror-dir data/raw

Writes ``reports/pipeline_speed.json`` (``--out``); the report's speed section shows it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repro.provenance import cpu_name  # noqa: E402


def working_tree() -> str:
    """The working tree as a git tree object: the tracked files as they are now and the new ones
    git does not ignore (what ``git add -A`` would commit). Written through a copy of the index,
    so the real index and the branch stay untouched (like ``git stash create``, it leaves only
    unreferenced objects behind)."""
    index = subprocess.run(
        ["git", "rev-parse", "--git-path", "index"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        shutil.copy2(ROOT / index, env["GIT_INDEX_FILE"])
        subprocess.run(["git", "add", "-A"], cwd=ROOT, env=env, check=True)
        tree = subprocess.run(
            ["git", "write-tree"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
    return tree.stdout.strip()


def checkout(commit: str | None, dest: Path) -> None:
    """``commit``'s tree, or the working tree's (:func:`working_tree`), extracted by
    ``git archive``; without the committed run's results, which are not inputs."""
    dest.mkdir(parents=True)
    tar = subprocess.run(
        ["git", "archive", commit or working_tree()], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")
    for rel in ("runs", "reports", "dvc.lock"):
        target = dest / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


def reduced(params_path: Path, args: argparse.Namespace) -> dict:
    """The same reduced main comparison in either version's params file."""
    p = yaml.safe_load(params_path.read_text())
    p["data"]["datasets"] = [args.dataset]
    p["data"]["sources"] = ["mirror"]
    p["data"]["mirror_dir"] = str(Path(args.mirror_dir).resolve())
    t = p["train"]
    t["epochs"], t["train_images"], t["seeds"] = args.epochs, args.train_images, args.seeds
    # The same held-out work in both: evaluation settings aligned, and about as many learning-
    # curve points (the baseline scored validation images every `curve_every` steps).
    p["evaluate"]["order_shuffles"], p["evaluate"]["val_images"] = 1, 1000
    steps = args.epochs * (args.train_images // t["batch_size"])
    if "curve_every" in t:
        t["curve_every"] = max(1, steps // 12)
        t["val_images"] = 1000
    p["studies"]["dataset"] = args.dataset
    p["studies"]["latent"]["datasets"] = [args.dataset]
    p["efficiency"]["dataset"] = args.dataset
    params_path.write_text(yaml.safe_dump(p, sort_keys=False))
    return p


def repro(repo: Path, target: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env["PYTHONPATH"] = str(repo)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", target],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(
            f"dvc repro {target} failed in {repo}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    stages = [
        line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage")
    ]
    return {"wall_seconds": seconds, "stages": len(stages), "stage_names": stages}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--baseline", default="ce9a9e5", help="commit of the one-process-per-model pipeline"
    )
    ap.add_argument(
        "--mirror-dir", default="data/raw", help="raw MNIST files (the data stage's cache)"
    )
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=6400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "reports" / "pipeline_speed.json"))
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="pipeline_speed_") as tmp:
        for name, commit, target in (
            ("baseline", args.baseline, "evaluate"),
            ("ours", None, "train"),
        ):
            repo = Path(tmp) / name
            checkout(commit, repo)
            p = reduced(repo / "params.yaml", args)
            runs = len(p["train"]["methods"]) * len(p["train"]["seeds"]) * len(p["model"]["nz"])
            steps = runs * args.epochs * (args.train_images // p["train"]["batch_size"])
            r = repro(repo, target)
            r |= {
                "commit": commit or "working tree",
                "target": target,
                "runs": runs,
                "model_steps": steps,
                "model_steps_per_second": steps / r["wall_seconds"],
                "num_threads": p["train"]["num_threads"],
                "workers": p["train"].get("workers", "one process per model"),
            }
            results[name] = r
            print(
                f"{name:9s} {r['stages']:3d} stages  {r['wall_seconds']:7.1f} s  "
                f"{r['model_steps_per_second']:6.2f} model-steps/s",
                flush=True,
            )
    out = {
        "benchmark": "pipeline_speed",
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "profile": {
            "dataset": args.dataset,
            "epochs": args.epochs,
            "train_images": args.train_images,
            "seeds": args.seeds,
        },
        "results": results,
        "speedup": results["baseline"]["wall_seconds"] / results["ours"]["wall_seconds"],
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"speed-up (baseline wall / ours): {out['speedup']:.2f}x -> {args.out}")


if __name__ == "__main__":
    main()
