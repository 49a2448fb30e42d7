"""DVC's metrics are the headline numbers only: `dvc metrics show` fits a terminal, and a
reproduction or an experiment compares results, never wall-clock seconds or run ids.

The committed metrics files are read as DVC reads them (dvc.yaml's ``metrics:`` entries); the
detailed per-run JSON stays plain outputs. tests/test_pipeline.py checks the numbers themselves
against the runs they summarise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.config import flatten, load_params
from repro.report.dvc_metrics import headline_metrics
from repro.result_files import is_provenance
from repro.train_main import headline

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = 200  # characters: the width `dvc metrics show` must fit
# The headline view of `dvc exp show` that docs/dvc.md gives (plain `dvc exp show` lists every
# declared param and code dependency, some 260 columns, and DVC has no setting to hide them).
HEADLINE_KEEP = r"^(Experiment|Created)$|^(mnist|fashion_mnist)\.|^(not_)?reproduced$|^inconclusive$|^not_tested$"
MAX_COLUMNS = 12  # metric columns of `dvc metrics show` / `dvc exp show` (params come on top)


def declared_metrics() -> list[Path]:
    """Every metrics file dvc.yaml declares, its templating resolved by the default params."""
    params = load_params(ROOT / "params.yaml")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths: list[Path] = []
    for stage in stages.values():
        for entry in stage.get("do", stage).get("metrics", []):
            (template,) = entry if isinstance(entry, dict) else [entry]
            if "${item.dataset}" in template:
                paths += [
                    ROOT / template.replace("${item.dataset}", d).replace("${item.nz}", str(nz))
                    for d in params.data.datasets
                    for nz in params.model.nz
                ]
            else:
                assert "${" not in template, f"resolve {template} in this test"
                paths.append(ROOT / template)
    return paths


def test_the_metrics_files_hold_headline_numbers_and_no_provenance():
    paths = declared_metrics()
    assert paths, "dvc.yaml declares no metrics"
    columns: set[str] = set()
    for path in paths:
        flat = flatten(json.loads(path.read_text()))
        assert flat, f"{path} is empty"
        assert all(isinstance(v, (int, float)) for v in flat.values()), path
        assert not [k for k in flat if is_provenance(k.rsplit(".", 1)[-1])], path
        columns |= set(flat)
    assert len(columns) <= MAX_COLUMNS, sorted(columns)


def test_the_group_headline_is_the_mean_over_seeds_per_bn_mode_and_method():
    finals = {
        ("gon", "gon-s0"): {"batch": 6.0, "running": 100.0},
        ("gon", "gon-s1"): {"batch": 8.0, "running": 50.0},
        ("ae", "ae-s0"): {"batch": 5.0, "running": 4.5},
    }
    assert headline(finals) == {
        "batch": {"ae": 5.0, "gon": 7.0},
        "running": {"ae": 4.5, "gon": 75.0},
    }
    assert headline({}) == {}


def test_the_report_metrics_are_the_headline_mode_of_each_group_and_the_verdicts(tmp_path):
    (tmp_path / "main").mkdir()
    group = {"batch": {"ae": 5.0, "gon": 7.0}, "running": {"ae": 4.5, "gon": 75.0}}
    (tmp_path / "main" / "mnist-nz32.json").write_text(json.dumps(group))
    verdicts = {"reproduced": 3, "not reproduced": 1}
    one = headline_metrics(
        tmp_path, datasets=["mnist", "cifar10"], nz=[32], headline_bn="batch", verdicts=verdicts
    )
    assert one == {"mnist": {"ae": 5.0, "gon": 7.0}, "reproduced": 3, "not_reproduced": 1}
    (tmp_path / "main" / "mnist-nz64.json").write_text(json.dumps(group))
    two = headline_metrics(
        tmp_path, datasets=["mnist"], nz=[32, 64], headline_bn="running", verdicts={}
    )
    assert two == {"mnist-nz32": group["running"], "mnist-nz64": group["running"]}


@pytest.mark.stage
def test_dvc_metrics_show_fits_a_200_character_terminal():
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show", "--precision", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    lines = out.splitlines()
    assert declared_metrics() == [ROOT / "reports" / "metrics.json"], "one file: short columns"
    assert len(lines) == 2, out
    assert max(len(line) for line in lines) <= TERMINAL, out


@pytest.mark.stage
def test_the_documented_headline_view_of_dvc_exp_show_fits_a_200_character_terminal():
    assert f"--keep '{HEADLINE_KEEP}'" in (ROOT / "docs" / "dvc.md").read_text()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "show",
            "--no-pager",
            "--drop",
            ".*",
            "--keep",
            HEADLINE_KEEP,
        ],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": str(TERMINAL)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "…" not in out, out  # no column elided to fit
    assert max(len(line) for line in out.splitlines()) <= TERMINAL, out
    for name in ("mnist.gon", "fashion_mnist.ae", "not_reproduced", "inconclusive"):
        assert name in out, out
