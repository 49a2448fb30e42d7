"""The ``repro`` command: validate params, switch profiles, verify a reproduction, open MLflow.

The pipeline stages themselves are ``pipelines/*.py`` scripts that ``dvc repro`` runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from repro.config import PROFILES, ConfigError, load_params
from repro.tracking import repo_root, tracking_uri


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a params file, then whether its runs fit this machine's memory (repro/capacity.py)."""
    from repro.capacity import GIB, check_fits

    try:
        p = load_params(args.path)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        need, workers, free = check_fits(p)
    except ConfigError as err:
        print(f"error: {args.path}: {err}", file=sys.stderr)
        return 2
    runs = len(p.data.datasets) * len(p.train.methods) * len(p.model.nz) * len(p.train.seeds)
    print(f"{args.path}: valid (profile {p.profile!r}, {runs} training runs)")
    print(
        f"memory: at least {need / GIB:.2f} GiB for {workers} worker(s) at once; "
        f"{free / GIB:.1f} GiB available"
    )
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Copy ``profiles/<name>.yaml`` over ``params.yaml`` after validating it."""
    root = repo_root()
    src = root / "profiles" / f"{args.name}.yaml"
    try:
        p = load_params(src)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if p.profile != args.name:
        print(
            f"error: {src}: its `profile` key says {p.profile!r}, expected {args.name!r}",
            file=sys.stderr,
        )
        return 2
    shutil.copyfile(src, root / "params.yaml")
    print(f"params.yaml is now the {args.name!r} profile; run `dvc repro`")
    return 0


def cmd_gpu_import(args: argparse.Namespace) -> int:
    """A GPU session's archive into runs/gpu/ and reports/gpu/ (repro/gpu_import.py)."""
    from repro.gpu_import import ArchiveError, import_session

    try:
        path = import_session(args.archive, repo_root())
    except (ArchiveError, ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote runs/gpu/ and {path.parent}/ (report.md, report.html, claims.csv); "
        "`dvc repro` now quotes its verdicts in reports/report.md"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Compare the working tree's results with the committed ones (repro/verify.py)."""
    from repro.verify import DIFFERS, verify

    results = verify(repo_root(), ref=args.ref, rtol=args.rtol, atol=args.atol)
    for r in results:
        if args.all or r.status != "identical":
            print(r.line())
    counts = {
        s: sum(r.status == s for r in results) for s in dict.fromkeys(r.status for r in results)
    }
    print(
        f"{len(results)} results files against {args.ref}: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    return 1 if counts.get(DIFFERS) else 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


RUNS_VIEW = "#/experiments?workflowType=machine_learning"


def cmd_ui(args: argparse.Namespace) -> int:
    """``mlflow ui`` on the study's store, bound to 127.0.0.1 unless told otherwise."""
    root = repo_root()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(root),
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    if args.host not in LOOPBACK:
        print(
            f"warning: --host {args.host} serves the MLflow store (no authentication) to other "
            "machines; the default, 127.0.0.1, keeps it local",
            file=sys.stderr,
        )
    print("running:", " ".join(cmd))
    # MLflow 3's UI opens an experiment on its GenAI overview unless the workflow type is chosen
    # (the toggle at its top left); this address opens the runs table in "Model training" mode.
    print(f"open: http://{args.host}:{args.port}/{RUNS_VIEW}")
    return subprocess.call(cmd, cwd=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a params file; non-zero exit on error")
    v.add_argument("path", nargs="?", default="params.yaml")
    v.set_defaults(func=cmd_validate)
    pr = sub.add_parser("profile", help="make params.yaml the named profile (profiles/<name>.yaml)")
    pr.add_argument("name", choices=[n for n in PROFILES if n != "tiny"])
    pr.set_defaults(func=cmd_profile)
    gi = sub.add_parser(
        "gpu-import", help="a GPU session's archive into runs/gpu/ and reports/gpu/"
    )
    gi.add_argument("archive", type=Path, help="gpu_session.tar.gz from bench/gpu_session.sh")
    gi.set_defaults(func=cmd_gpu_import)
    ve = sub.add_parser("verify", help="did `dvc repro` reproduce the committed results?")
    ve.add_argument("--ref", default="HEAD", help="the commit to compare with (default: HEAD)")
    ve.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (default 1e-5)")
    ve.add_argument("--atol", type=float, default=1e-8, help="absolute tolerance (default 1e-8)")
    ve.add_argument("--all", action="store_true", help="list identical files too")
    ve.set_defaults(func=cmd_verify)
    ui = sub.add_parser("ui", help="browse the MLflow runs (127.0.0.1 by default)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
