"""The ablation-study section models (:mod:`repro.report.studies`) built from study records in
memory: the cases the full report of ``test_report_studies.py`` does not reach (no reference
activation, no k = 1, one seed, CUDA peaks, a loss that does not fall with nz, a failed run
without an error, a run from another profile)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from test_report_studies import PIXELS, PNG_MAGIC, SEEDS, params, record, write_cell

from repro.report.loaders import load_claims
from repro.report.sections.studies import studies_context
from repro.report.studies.activation import activation_section
from repro.report.studies.common import NOT_COMPARED, Failure, study_scale
from repro.report.studies.figures import plot_activation, plot_multistep
from repro.report.studies.latent import latent_section
from repro.report.studies.multistep import MB, multistep_section
from repro.report.study_runs import StudyRun
from repro.report.verdicts import NOT_TESTED

ALL_CLAIMS = load_claims()


def runs_of(study: str, records: list[dict]) -> list[StudyRun]:
    return [StudyRun(study, f"cell-{i}", r) for i, r in enumerate(records)]


def test_activation_without_the_reference_has_rows_but_no_outcome() -> None:
    """elu (the reference) did not run: each row's contrast and each outcome is missing."""
    recs = [
        record("activation", "mnist", "gon", s, base + s, activation=act)
        for act, base in (("relu", 20.0), ("tanh", 30.0))
        for s in SEEDS
    ]
    a = activation_section(
        runs_of("activation", recs),
        pd.DataFrame(),
        params(),
        ALL_CLAIMS,
        confidence=0.95,
        headline_bn="batch",
    ).context
    assert a.status == "run" and a.reference == "elu"
    assert [(r.method, r.activation, r.reference, r.n, r.failed) for r in a.rows] == [
        ("GON", "relu", False, 3, 0),
        ("GON", "tanh", False, 3, 0),
    ]
    cell = a.rows[0].modes["batch"]
    assert cell.ci is not None and cell.ci.mean == 21.0 and cell.ci.n == 3
    assert (cell.diff, cell.p_holm, cell.verdict) == (None, None, NOT_COMPARED)
    head = a.headline_outcome
    assert head is not None and (head.method, head.bn_mode, head.headline) == ("GON", "batch", True)
    assert head.comparison is None and head.sentence is None
    assert [(o.bn_mode, o.bn, o.sentence) for o in a.other_outcomes] == [
        ("running", "BN running statistics", None)
    ]


def test_multistep_without_k1_compares_with_the_smallest_k_and_reports_cuda() -> None:
    """k = 2 and 4, one seed each: the baseline is k = 2, nothing is tested, cost ratios shown."""
    recs = [
        record("multistep", "mnist", "gon", 0, test, steps=k) | {"cuda_peak_bytes": 3 * MB * k}
        for k, test in ((2, 18.0), (4, 17.0))
    ]
    m = multistep_section(
        runs_of("multistep", recs), params(), ALL_CLAIMS, confidence=0.95, headline_bn="batch"
    ).context
    assert m.baseline == 2 and [r.k for r in m.rows] == [2, 4]
    assert m.alpha == pytest.approx(0.05) and not m.learn_step_size
    assert m.any_cuda and m.rows[0].cuda_peak_mb == 6.0 and m.rows[1].cuda_peak_mb == 12.0
    assert m.rows[1].graph_mb == 4 * 28e6 / MB
    assert m.rows[1].learned_step_size is None
    assert m.rows[1].train_sse.mean == 17.0 * 0.9 / PIXELS * PIXELS
    (f,) = m.findings
    assert (f.k, f.seconds_ratio, f.graph_ratio, f.cuda_ratio) == (4, 2.0, 2.0, 2.0)
    assert f.verdict == {"train": NOT_TESTED, "test_batch": NOT_TESTED, "test_running": NOT_TESTED}
    train = m.rows[1].contrasts["train"]
    assert train.diff.mean == pytest.approx(17.0 * 0.9 - 18.0 * 0.9, rel=1e-12)
    assert train.diff.n == 1 and train.verdict == NOT_TESTED
    assert m.rows[0].contrasts["train"].verdict == NOT_COMPARED  # the baseline itself
    assert not m.tested
    assert (m.lower_test, m.higher_test, m.lower_train, m.higher_train) == ([], [], [], [])


def test_multistep_without_loss_units_or_cuda_or_a_second_k() -> None:
    """No per-pixel loss recorded: no pixel count, so no training SSE; one k: no finding."""
    rec = record("multistep", "mnist", "gon", 0, 20.0, steps=1) | {"losses": {}}
    m = multistep_section(
        runs_of("multistep", [rec]), params(), ALL_CLAIMS, confidence=0.95, headline_bn="batch"
    ).context
    (row,) = m.rows
    assert row.train_sse is None and row.train_mse.mean == 20.0 * 0.9 / PIXELS
    assert row.test == {"batch": None, "running": None} and row.latent_norm is None
    assert row.cuda_peak_mb is None and not m.any_cuda
    assert m.baseline == 1 and m.findings == () and not m.tested


def test_multistep_not_run() -> None:
    m = multistep_section([], params(), ALL_CLAIMS, confidence=0.95, headline_bn="running").context
    assert m.status == "not run" and m.rows == () and m.baseline is None
    assert m.findings == () and m.lower_test == [] and not m.tested and not m.any_cuda
    assert m.bn.modes == ("running", "batch") and m.figure is None


def test_latent_findings_when_the_loss_does_not_fall_with_nz() -> None:
    """MNIST: GON rises from nz 64 to 128 and is lower than the AE at 128 only; Fashion-MNIST:
    one nz of GON and no AE, so no trend and no comparison."""
    recs = [
        record("latent", "mnist", "gon", 0, 10.0, nz=64),
        record("latent", "mnist", "gon", 0, 12.0, nz=128),
        record("latent", "mnist", "ae", 0, 9.0, nz=64),
        record("latent", "mnist", "ae", 0, 13.0, nz=128),
        record("latent", "fashion_mnist", "gon", 0, 25.0, nz=64),
    ]
    lat = latent_section(
        runs_of("latent", recs), [], params(), ALL_CLAIMS, confidence=0.95, headline_bn="batch"
    ).context
    published = {
        (c["dataset"], c["nz"]): float(c["value"])
        for c in ALL_CLAIMS["claims"]
        if c["id"].startswith("repro-table1-")
    }
    assert [s.name for s in lat.sources] == ["latent study"] and lat.table1_nz == [64, 128, 256]
    assert [(r.dataset, r.nz, r.method) for r in lat.rows] == [
        ("MNIST", 64, "GON"),
        ("MNIST", 64, "AE"),
        ("MNIST", 128, "GON"),
        ("MNIST", 128, "AE"),
        ("Fashion-MNIST", 64, "GON"),
    ]
    gon64 = lat.rows[0]
    assert gon64.modes["batch"].val_mse_per_pixel.mean == 10.0 * 0.97 / PIXELS
    assert gon64.modes["batch"].test_sse_per_image.mean == 10.0
    assert gon64.ratio["batch"] == 10.0 * 0.97 / published[("mnist", 64)]
    assert lat.rows[1].published is None and lat.rows[1].ratio == {"batch": None, "running": None}
    ratios = [r.ratio["batch"] for r in lat.rows if r.method_id == "gon"]
    assert lat.ratio_range == (min(ratios), max(ratios))
    mnist, fashion = lat.findings
    assert (mnist.dataset, mnist.source) == ("MNIST", "latent study")
    assert [(x.nz, x.n, x.diff.mean, x.lower) for x in mnist.per_nz] == [
        (64, 1, 1.0, False),
        (128, 1, -1.0, True),
    ]
    assert (mnist.gon_lower_at, mnist.ae_lower_at) == ([128], [64])
    assert mnist.gon_nz == [64, 128] and mnist.gon_falls_with_nz is False
    assert fashion.per_nz == () and fashion.gon_nz == [64] and fashion.gon_falls_with_nz is None


def test_latent_not_run() -> None:
    lat = latent_section([], [], params(), ALL_CLAIMS, confidence=0.95, headline_bn="batch")
    assert lat.points.empty and lat.plot is None
    assert lat.context.status == "not run" and lat.context.sources == ()
    assert lat.context.ratio_range is None and lat.context.unit is not None


def test_a_run_from_another_profile_is_a_warning_and_a_failure_without_error_is_listed(
    tmp_path: Path,
) -> None:
    rec = record("multistep", "mnist", "gon", 0, 20.0) | {"status": "crashed", "profile": "paper"}
    write_cell(tmp_path / "runs", "multistep", "mnist-k1", "mnist", [rec])
    (tmp_path / "runs" / "studies" / "multistep" / "mnist-k1" / "curves.csv").unlink()  # empty
    p = params()
    studies, warnings = studies_context(
        tmp_path / "runs",
        tmp_path / "out",
        main_runs=[],
        eff_runs=[],
        params=p,
        claims=ALL_CLAIMS,
        confidence=0.95,
        headline_bn="batch",
        datasets_run=["mnist"],
    )
    name = "multistep/mnist-k1/gon-elu-nz32-k1-s0"
    assert warnings == [f"study runs from a profile other than `{p.profile}`: {name}"]
    m = studies.multistep
    assert m.status == "run" and m.failures == (Failure(name, "crashed", ""),)
    assert [(r.k, r.n, r.failed) for r in m.rows] == [(1, 0, 1)]
    assert m.figure is None  # no finished run, no figure
    assert studies.activation.status == "not run" and studies.latent.status == "not run"
    assert not studies.datasets_note.cifar10_ran and studies.confidence == 0.95


def test_the_optimiser_steps_of_a_scale() -> None:
    scale = study_scale(params(), "activation")
    assert scale.steps == 9600 // 64 * 1 == 150
    assert dataclasses.replace(scale, train_images=0).steps is None


def test_a_figure_panel_without_data_is_hidden_not_drawn_empty(tmp_path: Path) -> None:
    """No run in one BN mode (activation) or no graph size recorded (multi-step)."""
    points = pd.DataFrame(
        {
            "method": ["gon", "gon", "ae", "ae"],
            "activation": ["elu", "relu", "elu", "relu"],
            "seed": [0, 0, 0, 0],
            "bn_mode": ["batch"] * 4,
            "loss": [1.0, 2.0, 1.5, 1.6],
        }
    )
    path = plot_activation(
        pd.DataFrame(),
        points,
        tmp_path / "activation.png",
        reference="elu",
        activations=["elu", "relu"],
        methods=["gon", "ae"],
        modes=["batch", "running"],
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    ks = pd.DataFrame(
        {
            "k": [1, 1, 2, 2],
            "seed": [0, 1, 0, 1],
            "train_sse": [1.0, 1.1, 0.9, 0.95],
            "test_batch": [1.0, 1.05, 0.8, 0.85],
            "seconds_per_epoch": [1.0, 1.1, 2.0, 2.1],
            "graph_mb": [None] * 4,
        }
    )
    path = plot_multistep(ks, tmp_path / "multistep.png", modes=["batch"])
    assert path.read_bytes()[:8] == PNG_MAGIC
