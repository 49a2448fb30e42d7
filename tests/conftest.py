"""Shared fixtures: the real params.yaml shrunk to a tiny profile, and tiny data made here."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch

from repro.config import Params, load_params
from repro.io import save_torch

ROOT = Path(__file__).resolve().parents[1]


def shrink(params: Params, **train_overrides) -> Params:
    """The real params.yaml, shrunk (lightning-hydra style) instead of a second hand-kept config."""
    data = dataclasses.replace(
        params.data, datasets=["synthetic"], synthetic_sizes={"train": 256, "val": 64, "test": 64}
    )
    train = dataclasses.replace(
        params.train,
        seeds=[0],
        epochs=3,
        batch_size=32,
        train_images=128,
        val_images=32,
        num_threads=1,
        curve_images=32,
        **train_overrides,
    )
    evaluate = dataclasses.replace(
        params.evaluate, batch_size=32, order_shuffles=2, val_images=None
    )
    model = dataclasses.replace(params.model, nz=[8], ngf=4)
    tracking = dataclasses.replace(params.tracking, enabled=False)
    gfe = dataclasses.replace(params.gfe, tau=50.0, max_nfe=400)
    efficiency = dataclasses.replace(
        params.efficiency,
        dataset="synthetic",
        train_sizes=[32, 64],
        seeds=[0],
        steps=4,
        eval_images=32,
        eval_points=2,
    )
    convergence = dataclasses.replace(params.convergence, train_size=64, images=8, iterations=10)
    s = params.studies
    studies = dataclasses.replace(
        s,
        dataset="synthetic",
        seeds=[0, 1],
        train_images=64,
        test_images=32,
        curve_points=4,
        curve_images=16,
        activation=dataclasses.replace(s.activation, activations=["elu", "relu"]),
        multistep=dataclasses.replace(s.multistep, steps=[1, 2]),
        latent=dataclasses.replace(s.latent, datasets=["synthetic"], nz=[4], seeds=[0]),
    )
    variational = dataclasses.replace(
        params.variational,
        dataset="synthetic",
        nz=4,
        ngf=4,
        seeds=[0, 1],
        train_images=64,
        epochs=1,
        batch_size=32,
        test_images=16,
        iw_samples=4,
        sample_images=16,
    )
    implicit = dataclasses.replace(
        params.implicit,
        datasets=["synthetic"],
        nz=4,
        hidden=8,
        seeds=[0, 1],
        steps=3,
        batch_size=16,
        train_images=64,
        test_images=16,
    )
    return dataclasses.replace(
        params,
        profile="tiny",
        variational=variational,
        implicit=implicit,
        data=data,
        train=train,
        evaluate=evaluate,
        model=model,
        tracking=tracking,
        gfe=gfe,
        efficiency=efficiency,
        convergence=convergence,
        studies=studies,
    )


def stage_env(*, tracking: bool = False) -> dict[str, str]:
    """The environment of a stage script run as a subprocess by a test.

    This checkout's ``repro`` first on the path (not an installed copy), no bytecode written,
    one thread. Tracking off; or on, into the study copy's own store: the caller's
    ``MLFLOW_TRACKING_URI``, ``REPRO_TRACKING`` and ``DVC_ROOT`` would send it elsewhere.
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    if tracking:
        for key in ("MLFLOW_TRACKING_URI", "REPRO_TRACKING", "DVC_ROOT"):
            env.pop(key, None)
    else:
        env["REPRO_TRACKING"] = "off"
    return env


def study_copy(directory: Path, params_text: str) -> Path:
    """A study checkout without data: the stage scripts, dvc.yaml and ``params_text`` as
    ``params.yaml`` (returned)."""
    shutil.copytree(
        ROOT / "pipelines", directory / "pipelines", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "dvc.yaml", directory / "dvc.yaml")
    path = directory / "params.yaml"
    # surrogateescape: a lone surrogate "\udcXX" in the text is written as the raw byte 0xXX
    # (the bad-params table writes a file that is not UTF-8 that way)
    path.write_bytes(params_text.encode("utf-8", "surrogateescape"))
    return path


@pytest.fixture
def tiny_params() -> Params:
    return shrink(load_params(ROOT / "params.yaml"))


def blob_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs as uint8 (N, 1, size, size): image-like, cheap, deterministic."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, generator=g) * (size - 8) + 4
    radius = torch.rand(n, 1, 1, generator=g) * 5 + 3
    d2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    img = torch.exp(-d2 / (2 * radius**2))
    return (img * 255).round().to(torch.uint8).unsqueeze(1)


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A data directory in the data stage's format: {train,val,test}.pt with uint8 images."""
    out = tmp_path / "data" / "synthetic"
    for i, (split, n) in enumerate({"train": 256, "val": 64, "test": 64}.items()):
        save_torch(
            out / f"{split}.pt",
            {"images": blob_images(n, seed=i), "labels": torch.zeros(n, dtype=torch.int64)},
        )
    return out


# --- A real headless browser for the HTML report's test ------------------------------------------

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)
BROWSER_PACKAGES = ("chromium", "chromium-driver")  # Debian's names


def find_browser(
    environ: Mapping[str, str], which: Callable[[str], str | None]
) -> tuple[str, str] | None:
    """(chromium, chromedriver): $REPRO_CHROMIUM / $REPRO_CHROMEDRIVER first, then the PATH."""

    def first(var: str, names: tuple[str, ...]) -> str | None:
        if environ.get(var):
            return which(environ[var])
        return next((path for name in names if (path := which(name))), None)

    browser = first("REPRO_CHROMIUM", BROWSER_NAMES)
    driver = first("REPRO_CHROMEDRIVER", DRIVER_NAMES)
    return (browser, driver) if browser and driver else None


def install_browser(
    environ: Mapping[str, str],
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> str:
    """Install Debian's chromium + chromium-driver when allowed; say what happened."""
    if environ.get("REPRO_NO_BROWSER_INSTALL"):
        return "install not attempted: REPRO_NO_BROWSER_INSTALL is set"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "install not attempted: not root"
    if which("apt-get") is None or not Path("/etc/debian_version").is_file():
        return "install not attempted: not a Debian-like system with apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *BROWSER_PACKAGES],
    )
    for cmd in steps:
        try:
            done = run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"`{' '.join(cmd)}` failed: {err}"
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-1500:]
            return f"`{' '.join(cmd)}` exited {done.returncode}: ...{tail}"
    return f"installed {' and '.join(BROWSER_PACKAGES)} with apt-get"


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(chromium_path, chromedriver_path) for Selenium; installed once if missing, else skip."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    found = find_browser(os.environ, shutil.which)
    if found is None:
        note = install_browser(os.environ)
        found = find_browser(os.environ, shutil.which)
        if found is None:
            pytest.skip(
                "no headless Chromium with chromedriver: looked at $REPRO_CHROMIUM/"
                f"$REPRO_CHROMEDRIVER and on PATH for {', '.join(BROWSER_NAMES)} and "
                f"{', '.join(DRIVER_NAMES)}; {note}"
            )
    return found
