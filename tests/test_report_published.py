"""The published-numbers and parameter-count sections (repro.report.sections.published) as
typed models, on a small claims registry and hand-made results rows with known values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from repro.report.loaders import Run
from repro.report.sections.published import (
    JuliaRow,
    OursCell,
    ParameterRatio,
    ParameterRow,
    ParametersSection,
    Table1Row,
    parameters_section,
    published_section,
)
from repro.stats import MeanCI

SOURCES = {
    "repro_report": {"cite": "Table-1 source"},
    "julia_repro": {"cite": "Julia source", "url": "https://example.org/j", "commit": "abc1234"},
}
TABLE1_MNIST = {
    "id": "repro-table1-mnist-nz64",
    "dataset": "mnist",
    "nz": 64,
    "split": "val",
    "value": 2.4,
    "decimals": 2,
    "unit": "MSE (as printed)",
}
TABLE1_CIFAR = {
    "id": "repro-table1-cifar10-nz64",
    "dataset": "cifar10",
    "nz": 64,
    "split": "val",
    "value": 7.0,
    "decimals": 1,
    "unit": "other unit",
}
JULIA_MNIST = {"id": "julia-test-mnist-nz64", "dataset": "mnist", "nz": 64, "value": 12.345}
JULIA_AE_MNIST = {"id": "julia-ae-test-mnist-nz64", "dataset": "mnist", "nz": 64, "value": 9.5}
JULIA_FASHION = {
    "id": "julia-test-fashion_mnist-nz64",
    "dataset": "fashion_mnist",
    "nz": 64,
    "value": "qualitative",
}
CLAIMS = {
    "sources": SOURCES,
    "claims": [
        TABLE1_MNIST,
        {"id": "gfe-data-efficiency", "dataset": "mnist"},
        TABLE1_CIFAR,
        JULIA_MNIST,
        JULIA_AE_MNIST,
        JULIA_FASHION,
    ],
}
GON_VAL = MeanCI(mean=2.5, low=2.0, high=3.0, n=3, std=0.2)
GON_TEST = MeanCI(mean=11.0, low=10.0, high=12.0, n=3, std=0.4)


def results_rows() -> pd.DataFrame:
    """results.csv rows: GON on MNIST at nz 64 in batch mode (val and test); no AE, no running."""
    return pd.DataFrame(
        [
            {
                "dataset": "mnist",
                "method": "gon",
                "nz": 64,
                "bn_mode": "batch",
                "split": split,
                "mean": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "n": ci.n,
                "std": ci.std,
            }
            for split, ci in (("val", GON_VAL), ("test", GON_TEST))
        ]
    )


def test_published_section_pairs_every_published_row_with_ours_or_a_reason() -> None:
    pub = published_section(
        CLAIMS,
        results_rows(),
        datasets_run={"mnist"},
        datasets_listed={"mnist", "fashion_mnist"},
        bn_modes=["batch", "running"],
    )
    no_nz = OursCell(None, "no main run at this nz in this profile")
    not_in_study = OursCell(None, "dataset not in this study")
    not_run = OursCell(None, "dataset not run in this profile")
    assert pub.table1 == (
        Table1Row(
            TABLE1_MNIST, "MNIST", "2.40", {"batch": OursCell(GON_VAL, None), "running": no_nz}
        ),
        Table1Row(
            TABLE1_CIFAR, "CIFAR-10", "7.0", {"batch": not_in_study, "running": not_in_study}
        ),
    )
    assert pub.julia == (
        JuliaRow(
            JULIA_MNIST,
            "MNIST",
            64,
            "12.35",
            "9.50",
            ours_gon={"batch": OursCell(GON_TEST, None), "running": no_nz},
            ours_ae={"batch": no_nz, "running": no_nz},
        ),
        JuliaRow(
            JULIA_FASHION,
            "Fashion-MNIST",
            64,
            "qualitative",
            "not available",
            ours_gon={"batch": not_run, "running": not_run},
            ours_ae={"batch": not_run, "running": not_run},
        ),
    )
    assert pub.table1_source == "Table-1 source"
    assert pub.julia_source == SOURCES["julia_repro"]
    assert pub.table1_unit == "MSE (as printed)"  # the first Table 1 claim's


def test_published_section_without_table1_claims_has_no_unit() -> None:
    claims = {"sources": SOURCES, "claims": [JULIA_MNIST]}
    pub = published_section(
        claims, results_rows(), datasets_run=set(), datasets_listed=set(), bn_modes=["batch"]
    )
    assert pub.table1 == () and pub.table1_unit is None
    assert [row.ours_gon for row in pub.julia] == [
        {"batch": OursCell(None, "dataset not in this study")}
    ]


def run(method: str, nz: int, seed: int, **metrics: Any) -> Run:
    return Run("mnist", method, nz, seed, Path(f"runs/{method}-{nz}-{seed}"), metrics, None)


PUBLISHED_RATIO_CLAIMS = {
    "sources": SOURCES,
    "claims": [
        {"id": "gon-half-parameters-gon", "nz": 32, "value": 100, "where": "GON.py"},
        {"id": "gon-half-parameters-ae", "nz": 32, "value": 250, "where": "AE"},
    ],
}


def test_parameters_section_counts_ratios_and_inconsistent_rows() -> None:
    runs = [
        run("ae", 32, 0, n_params=250),
        run("gon", 32, 0, n_params=100),
        run("gon", 32, 1, n_params=100),
        run("ae_linear", 32, 0, n_params=7),
        run("gon", 64, 0, n_params=160),
        run("gon", 64, 1, n_params=150),  # two counts at one nz: a warning, no ratio
        run("ae", 64, 0, n_params=300),
        run("gon", 128, 0, n_params=400),  # no AE at this nz: no ratio
        run("ae", 32, 2),  # no count recorded: left out
    ]
    section = parameters_section(runs, PUBLISHED_RATIO_CLAIMS, ["gon", "ae"])
    assert section.rows == (
        ParameterRow("GON", 32, (100,)),
        ParameterRow("GON", 64, (150, 160)),
        ParameterRow("GON", 128, (400,)),
        ParameterRow("AE", 32, (250,)),
        ParameterRow("AE", 64, (300,)),
        ParameterRow("AE (linear encoder)", 32, (7,)),  # a method params does not list comes last
    )
    assert section.ratios == (ParameterRatio(32, 100, 250),)
    assert section.ratios[0].ratio == 0.4
    assert section.inconsistent == (ParameterRow("GON", 64, (150, 160)),)
    assert section.published == {
        "nz": 32,
        "gon": 100,
        "ae": 250,
        "ratio": 0.4,
        "where": "GON.py",
    }


def test_parameters_section_without_runs_or_published_counts() -> None:
    section = parameters_section([], {"sources": SOURCES, "claims": []}, ["gon", "ae"])
    assert section == ParametersSection(rows=(), ratios=(), published=None)
    assert section.inconsistent == ()
