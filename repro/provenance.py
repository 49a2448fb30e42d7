"""Where a result came from: code version, configuration, software and hardware."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from repro.config import Params, params_sha256
from repro.tracking import git_commit

# Pipeline outputs tracked in git: DVC rewrites (and first deletes) them while stages run, so
# they say nothing about whether the code and params behind a result differ from the commit.
PIPELINE_OUTPUTS = ("reports", "runs", "data", "dvc.lock")


def _git_dirty(root: Path) -> bool:
    """True when tracked code or configuration differs from the commit (pipeline outputs aside)."""
    excludes = [f":(exclude){p}" for p in PIPELINE_OUTPUTS]
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excludes],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else the platform's guess); for provenance and bench/."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(params: Params, root: Path) -> dict[str, Any]:
    """The provenance block of the report (no user paths, no secrets)."""
    import os

    cuda = torch.version.cuda if torch.cuda.is_available() else None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "git_commit": git_commit(root),
        "git_dirty": _git_dirty(root),
        "params_sha256": params_sha256(params),
        "profile": params.profile,
        "torch_version": torch.__version__,
        "cuda": cuda,
        "device": gpu or "cpu",
        "hardware": f"{cpu_name()}, {os.cpu_count()} logical CPUs" + (f", {gpu}" if gpu else ""),
        "python": platform.python_version(),
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
