"""`dvc plots show`: one line per run from the runs' own files, drawn offline."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from repro.report.dvc_plots import PLOTS, plot_frames
from repro.report.loaders import load_efficiency_runs, load_runs
from tests.conftest import ROOT
from tests.factories import main_metrics


def _report_plots() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {Path(next(iter(p))).name: next(iter(p.values())) for p in stages["report"]["plots"]}


def test_each_plot_is_declared_with_the_axes_its_file_has():
    declared = _report_plots()
    assert {name: (d["x"], d["y"]) for name, d in declared.items()} == PLOTS
    for d in declared.values():
        assert (ROOT / ".dvc" / "plots" / f"{d['template']}.json").is_file()
        assert d["cache"] is False  # committed beside results.csv, like the report's tables


def test_the_plots_page_template_is_dvcs_config_and_loads_nothing():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    page = ROOT / ".dvc" / config["plots"]["html_template"]
    html = page.read_text(encoding="utf-8")
    assert "{plot_divs}" in html and "{scripts}" not in html  # DVC's CDN scripts stay out
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", html)
    for name in ("vega", "vega-lite", "vega-embed"):
        assert (page.parent / f"LICENSE-{name}.txt").is_file()


def test_plot_rows_are_each_runs_own_curve_under_its_name(tmp_path):
    runs_dir = tmp_path / "runs"
    for seed, losses in ((0, [0.5, 0.2]), (1, [0.4, 0.1])):
        run = runs_dir / "main" / "mnist-nz8" / f"gon-s{seed}"
        run.mkdir(parents=True)
        main_metrics(dataset="mnist", method="gon", nz=8, seed=seed, losses={}).write(
            run / "metrics.json"
        )
        curve = {"step": [0, 10], "images_seen": [0, 640], "train_seconds": [0.0, 1.0]}
        pd.DataFrame(curve | {"test_mse_per_pixel": losses}).to_csv(run / "curve.csv", index=False)
        history = {"epoch": [1], "train_mse_per_pixel": [losses[1]], "val_mse_per_pixel": [0.3]}
        pd.DataFrame(history).to_csv(run / "history.csv", index=False)
    runs, _ = load_runs(runs_dir)
    eff, _ = load_efficiency_runs(runs_dir / "efficiency")
    frames = plot_frames(runs, eff)
    assert frames["learning_curves.csv"].to_dict("list") == {
        "series": ["mnist nz8 gon s0"] * 2 + ["mnist nz8 gon s1"] * 2,
        "step": [0, 10, 0, 10],
        "test_mse_per_pixel": [0.5, 0.2, 0.4, 0.1],
    }
    assert frames["training.csv"].to_dict("list") == {
        "series": ["mnist nz8 gon s0", "mnist nz8 gon s1"],
        "epoch": [1, 1],
        "train_mse_per_pixel": [0.2, 0.1],
    }
    assert list(frames["efficiency.csv"].columns) == ["series", "images_seen", "test_sse_per_image"]
    assert frames["efficiency.csv"].empty


@pytest.mark.stage
def test_dvc_plots_show_draws_every_plot_without_a_network(tmp_path, chromium):
    """The committed plot files, through DVC's own command and config, in headless Chromium."""
    from tests.test_report_html import open_in_chromium

    out = tmp_path / "dvc_plots"
    cmd = [sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=120, capture_output=True)
    page = out / "index.html"
    assert "cdn.jsdelivr" not in page.read_text(encoding="utf-8")
    n = len(PLOTS)
    seen = open_in_chromium(
        page,
        chromium,
        tmp_path,
        until=f"document.querySelectorAll('.vega-embed canvas').length >= {n}",
    )
    assert seen["vega_views"] == n
    assert seen["fetched"] == []  # the browser loaded nothing besides the page itself
