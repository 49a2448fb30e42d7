"""The main-run controls of the report (linear encoder, parameter counts, convergence speed) as
typed section models, on tiny fake runs with hand-computed expected values (no training)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from repro.config import Params, load_params
from repro.report.controls import convergence as conv
from repro.report.controls.cost import (
    ParameterRatio,
    ParameterRow,
    cost_section,
    parameter_rows,
)
from repro.report.controls.linear_encoder import (
    draw_linear_encoder_figure,
    linear_encoder_section,
)
from repro.report.loaders import load_claims
from repro.report.studies.common import main_scale
from repro.report.study_runs import StudyRun
from repro.report.verdicts import ABOVE, BELOW, SPANS
from repro.stats import PairedDifference

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class FakeRun:
    """What the controls read of a main run (repro.report.loaders.Run)."""

    dataset: str
    method: str
    nz: int
    seed: int
    path: Path = Path("/nonexistent")
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}-nz{self.nz}-s{self.seed}"


def params(threshold: float = 2.0) -> Params:
    p = load_params(ROOT / "params.yaml")
    return dataclasses.replace(
        p, report=dataclasses.replace(p.report, convergence_threshold=threshold)
    )


def main_losses(batch: float, running: float | None = None) -> dict[str, Any]:
    """Main-run nesting: BN mode, split, unit."""
    out = {"batch": {"test": {"sse_per_image": batch}}}
    if running is not None:
        out["running"] = {"test": {"sse_per_image": running}}
    return out


# --------------------------------------------------------------------------------------------
# Convergence speed
# --------------------------------------------------------------------------------------------


def curve_run(tmp: Path, dataset: str, method: str, seed: int, losses: list[float]) -> FakeRun:
    path = tmp / f"{dataset}-{method}-s{seed}"
    path.mkdir(parents=True)
    steps = [0, 10, 20][: len(losses)]
    pd.DataFrame(
        {
            "step": steps,
            "images_seen": [64 * s for s in steps],
            "train_seconds": [0.5 * s for s in steps],
            "test_mse_per_pixel": losses,
        }
    ).to_csv(path / "curve.csv", index=False)
    return FakeRun(dataset, method, 32, seed, path)


def test_convergence_not_run_without_curves() -> None:
    section = conv.convergence_section([FakeRun("mnist", "gon", 32, 0)], params(), confidence=0.95)
    assert section == conv.ConvergenceSpeed(factor=2.0, scale=section.scale)
    assert section.status == "not run" and section.missing_curves == ()
    assert (
        conv.draw_convergence_figures(section, Path("/nonexistent"), methods=[], confidence=0.95)
        is section
    )


def test_convergence_threshold_censoring_and_figures(tmp_path: Path) -> None:
    runs = [
        curve_run(tmp_path, "mnist", "ae", 0, [4.0, 2.0, 1.0]),
        curve_run(tmp_path, "mnist", "ae", 1, [4.0, 2.0, 1.0]),
        curve_run(tmp_path, "mnist", "gon", 0, [4.0, 3.0, 1.5]),
        curve_run(tmp_path, "mnist", "gon", 1, [4.0, 3.0, 2.5]),  # never ≤ 2.0: censored
        curve_run(tmp_path, "mnist", "ae_linear", 0, [4.0, 2.0, 0.5]),
        curve_run(tmp_path, "mnist", "ae_linear", 1, [4.0, 2.0, 0.5]),
        curve_run(tmp_path, "fashion_mnist", "gon", 0, [4.0, 3.0, 2.0]),  # no AE: no threshold
        FakeRun("mnist", "ae_linear", 32, 2),  # no curve.csv
    ]
    section = conv.convergence_section(runs, params(), confidence=0.95)
    assert section.status == "run" and section.factor == 2.0
    assert section.missing_curves == ("mnist/ae_linear-nz32-s2",)
    mnist, fashion = section.items
    assert (mnist.dataset, mnist.dataset_id, mnist.nz) == ("MNIST", "mnist", 32)
    assert mnist.threshold == 2.0 and mnist.ae_final == 1.0
    gon, ae, linear = mnist.rows
    assert (linear.method_id, linear.reached, linear.n) == ("ae_linear", 2, 2)
    assert (gon.method, gon.method_id, gon.n, gon.reached) == ("GON", "gon", 2, 1)
    assert gon.censored == (conv.Censored(seed=1, last_step=20, final=2.5),)
    # seed 0 crosses 2.0 between steps 10 (3.0) and 20 (1.5): 10 + 1/1.5 × 10
    assert gon.steps is not None and gon.steps.mean == pytest.approx(10 + 10 / 1.5)
    assert gon.seconds is not None and gon.seconds.mean == pytest.approx(0.5 * (10 + 10 / 1.5))
    assert (ae.n, ae.reached, ae.censored) == (2, 2, ())
    assert ae.steps is not None and ae.steps.mean == 10.0 and ae.steps.n == 2
    g = mnist.gon_vs_ae
    assert g is not None and (g.gon, g.ae) == (gon, ae)
    assert (g.common, g.gon_censored, g.ae_censored) == (1, 1, 0)
    assert g.steps is not None and g.steps.mean == pytest.approx(10 / 1.5) and g.steps.n == 1
    assert (
        g.steps_verdict
        == g.seconds_verdict
        == ("GON not faster (it failed to reach the threshold in more runs)")
    )
    assert [a.rival for a in mnist.along_training] == ["AE", "AE (linear encoder)"]
    assert (fashion.threshold, fashion.ae_final, fashion.rows, fashion.gon_vs_ae) == (
        None,
        None,
        (),
        None,
    )
    assert fashion.along_training == () and fashion.panel.threshold is None
    assert mnist.panel.threshold == 2.0 and not mnist.panel.diff.empty

    drawn = conv.draw_convergence_figures(
        section, tmp_path / "figures", methods=["gon", "ae"], confidence=0.95
    )
    assert drawn == dataclasses.replace(
        section,
        figure="figures/study_convergence.png",
        figure_difference="figures/study_paired_difference.png",
    )
    for name in ("study_convergence.png", "study_paired_difference.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == PNG_MAGIC
    # GON alone: curves drawn, no paired difference to draw
    alone = conv.convergence_section(runs[6:7], params(), confidence=0.95)
    drawn = conv.draw_convergence_figures(
        alone, tmp_path / "alone", methods=["gon"], confidence=0.95
    )
    assert (drawn.figure, drawn.figure_difference) == ("figures/study_convergence.png", None)


def diff_frame(rows: list[tuple[int, float, float]]) -> pd.DataFrame:
    """rival ae, (step, low, high), mean midway, two seeds."""
    return pd.DataFrame(
        [
            {"rival": "ae", "step": s, "mean": (lo + hi) / 2, "low": lo, "high": hi, "n": 2}
            for s, lo, hi in rows
        ]
    )


def test_along_training_settles_on_the_last_side() -> None:
    d = diff_frame([(0, -1.0, 1.0), (10, 1.0, 3.0), (20, -3.0, -1.0), (30, -4.0, -2.0)])
    a = conv._along_training(d, "ae")
    assert a is not None
    assert (a.rival, a.last_step, a.last_side, a.settled_from) == ("AE", 30, BELOW, 20)
    assert (a.steps_gon_ahead, a.steps_gon_behind) == ((20, 30), (10,))
    assert (a.last.mean, a.last.low, a.last.high, a.last.n) == (-3.0, -4.0, -2.0, 2)
    assert math.isnan(a.last.p_value) and math.isnan(a.last.std)
    above = conv._along_training(diff_frame([(10, 1.0, 2.0), (20, 1.0, 2.0)]), "ae")
    assert above is not None and (above.last_side, above.settled_from) == (ABOVE, 10)
    spans = conv._along_training(diff_frame([(10, 1.0, 2.0), (20, -1.0, 2.0)]), "ae")
    assert spans is not None and (spans.last_side, spans.settled_from) == (SPANS, None)
    assert conv._along_training(diff_frame([(0, -1.0, 1.0)]), "ae") is None
    assert conv._along_training(d, "ae_linear") is None


def paired(mean: float, p: float, n: int = 3) -> PairedDifference:
    return PairedDifference(mean=mean, low=mean - 1, high=mean + 1, n=n, std=1.0, p_value=p)


@pytest.mark.parametrize(
    ("d", "gon_censored", "ae_censored", "verdict"),
    [
        (None, 2, 1, "GON not faster (it failed to reach the threshold in more runs)"),
        (None, 0, 1, "GON faster (the AE failed to reach the threshold in more runs)"),
        (None, 0, 0, "not tested (no seed where both reached the threshold)"),
        (paired(-5.0, math.nan, n=1), 0, 0, "not tested (paired test undefined with n = 1)"),
        (paired(-5.0, 0.001), 0, 0, "GON faster"),
        (paired(5.0, 0.001), 0, 0, "GON slower"),
        (paired(5.0, 0.5), 0, 0, "not distinguishable"),
    ],
)
def test_speed_verdict(
    d: PairedDifference | None, gon_censored: int, ae_censored: int, verdict: str
) -> None:
    assert conv._speed_verdict(d, gon_censored, ae_censored, 0.95) == verdict


def test_paired_curve_difference_relative_is_percent_of_the_rival() -> None:
    long = pd.DataFrame(
        [
            {"step": 10, "seed": s, "method": m, "test_mse_per_pixel": v}
            for s, (g, a) in enumerate(((3.0, 2.0), (1.0, 2.0)))
            for m, v in (("gon", g), ("ae", a))
        ]
    )
    d = conv.paired_curve_difference(long, "ae", 0.95, relative=True)
    assert list(d.columns) == ["rival", "step", "mean", "low", "high", "n"]
    assert d.iloc[0][["rival", "step", "mean", "n"]].tolist() == ["ae", 10, 0.0, 2]  # +50, −50


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------


@dataclass
class Eff:
    method: str
    metrics: dict[str, Any]


def study_run(method: str, n: int | None, *, status: str = "ok", **record: Any) -> StudyRun:
    rec = {"method": method, "nz": 32, "activation": "elu", "status": status, "seed": 0}
    return StudyRun("activation", "mnist-elu", rec | {"n_params": n} | record)


def test_parameter_rows_and_ratios() -> None:
    main = [
        FakeRun("mnist", "ae", 32, 0, metrics={"n_params": 200, "activation": "elu"}),
        FakeRun("mnist", "gon", 32, 0, metrics={"n_params": 100, "activation": "elu"}),
        FakeRun("mnist", "gon", 32, 1, metrics={"n_params": 100, "activation": "elu"}),
    ]
    study = [
        study_run("gon", 100, n_params_decoder=100),
        study_run("ae", 200, n_params_decoder=100),
        study_run("gon", 100, activation="relu", n_params_decoder=100),
        study_run("ae", 200, activation="relu"),
        study_run("gon", 100, activation="tanh", steps=2),  # k = 2: no ratio
        study_run("gon", 100, activation="silu"),  # no AE in this setting: no ratio
        study_run("gon", 101, nz=64),
        study_run("gon", 102, nz=64),  # two counts in one setting: no ratio
        study_run("ae", 200, nz=64),
        study_run("ae", 999, status="diverged"),  # left out
    ]
    eff = [Eff("gfe", {"architecture": "mlp", "nz": 20, "n_params": 50}), Eff("ae", {})]
    rows = parameter_rows(main, study, eff, params().train)

    def row(
        source: str,
        method: str,
        nz: int | None,
        act: str | None,
        steps: int | None,
        n: tuple[int, ...],
        dec: tuple[int, ...] = (),
        arch: str = "conv",
    ) -> ParameterRow:
        return ParameterRow(source, method, arch, nz, act, steps, n, dec)

    assert rows == (
        row("main runs", "gon", 32, "elu", 1, (100,)),
        row("main runs", "ae", 32, "elu", None, (200,)),
        row("activation study", "gon", 32, "elu", 1, (100,), (100,)),
        row("activation study", "gon", 32, "relu", 1, (100,), (100,)),
        row("activation study", "gon", 32, "silu", 1, (100,)),
        row("activation study", "gon", 32, "tanh", 2, (100,)),
        row("activation study", "gon", 64, "elu", 1, (101, 102)),
        row("activation study", "ae", 32, "elu", None, (200,), (100,)),
        row("activation study", "ae", 32, "relu", None, (200,)),
        row("activation study", "ae", 64, "elu", None, (200,)),
        row("data efficiency", "ae", None, None, None, (), arch="n/a"),
        row("data efficiency", "gfe", 20, None, None, (50,), arch="mlp"),
    )
    claims = load_claims()
    speed = conv.ConvergenceSpeed(factor=2.0, scale=main_scale(params()))
    section = cost_section(main, study, eff, params(), claims, convergence=speed)
    assert section.status == "run" and section.convergence is speed
    assert section.ratios == (
        ParameterRatio(
            gon=100,
            ae=200,
            settings=("main runs, nz 32", "activation study, nz 32 (elu, relu)"),
        ),
    )
    assert section.ratios[0].ratio == 0.5 and section.ratio_range == (0.5, 0.5)
    assert section.published is not None and section.published["ratio"] > 0
    assert [c["id"] for c in section.claims] == ["gon-faster-convergence"]
    two = cost_section(
        main[:2],
        [study_run("gon", 150), study_run("ae", 200)],
        [],
        params(),
        claims,
        convergence=speed,
    )
    assert [r.ratio for r in two.ratios] == [0.5, 0.75] and two.ratio_range == (0.5, 0.75)
    empty = cost_section([], [], [], params(), claims, convergence=speed)
    assert (empty.status, empty.parameter_rows, empty.ratios, empty.ratio_range) == (
        "not run",
        (),
        (),
        None,
    )


# --------------------------------------------------------------------------------------------
# Linear-encoder control
# --------------------------------------------------------------------------------------------


def lin_run(method: str, seed: int, batch: float, running: float | None, affinity: Any) -> FakeRun:
    metrics = {"losses": main_losses(batch, running), "affinity_error": affinity}
    return FakeRun("mnist", method, 32, seed, metrics=metrics)


def test_linear_encoder_not_run_without_a_linear_encoder() -> None:
    section = linear_encoder_section(
        [lin_run("gon", 0, 1.0, 1.0, None)], params(), confidence=0.95, headline_bn="running"
    )
    assert section.status == "not run" and section.items == ()
    assert section.bn.modes == ("running", "batch")
    assert draw_linear_encoder_figure(section, Path("/nonexistent"), confidence=0.95) is section


def test_linear_encoder_rows_contrasts_and_figure(tmp_path: Path) -> None:
    runs = [
        lin_run("gon", s, 10.0 + s, 20.0 + s, {"batch": (1e-13, 3e-13, 2e-13)[s], "running": None})
        for s in (0, 1, 2)
    ] + [
        lin_run("ae_linear", s, 12.0 + s + 0.1 * s * s, None, None) for s in (0, 1, 2)
    ]  # no AE at all; the linear AE measured no running-mode loss and no affinity
    section = linear_encoder_section(runs, params(), confidence=0.95, headline_bn="batch")
    assert section.status == "run" and section.figure is None
    (item,) = section.items
    assert (item.dataset, item.dataset_id, item.nz) == ("MNIST", "mnist", 32)
    gon, lin = item.rows
    assert (gon.method, gon.method_id, gon.n) == ("GON", "gon", 3)
    assert gon.affinity == {"batch": 3e-13, "running": None}
    assert gon.test["batch"] is not None and gon.test["batch"].mean == 11.0
    assert gon.test["running"] is not None and gon.test["running"].mean == 21.0
    assert (lin.method, lin.test["running"], lin.affinity) == (
        "AE (linear encoder)",
        None,
        {"batch": None, "running": None},
    )
    assert item.by_id == {"gon": gon, "ae_linear": lin}
    assert item.contrasts["running"] == {}  # no matched seeds
    c = item.contrasts["batch"]["ae_linear"]
    # GON − linear AE per seed: −2, −2.1, −2.4
    assert (c.other, c.diff.n) == ("AE (linear encoder)", 3)
    assert c.diff.mean == pytest.approx(-6.5 / 3)
    assert c.verdict == "lower" and c.p_holm == c.diff.p_value
    assert list(item.points.columns) == ["method", "seed", "bn_mode", "loss", "dataset", "nz"]
    assert len(item.points) == 9  # GON: 3 seeds × 2 modes; linear AE: 3 seeds × batch

    drawn = draw_linear_encoder_figure(section, tmp_path, confidence=0.95)
    assert drawn == dataclasses.replace(section, figure="figures/study_linear_encoder.png")
    assert (tmp_path / "study_linear_encoder.png").read_bytes()[:8] == PNG_MAGIC
    # runs without any test loss: items, but nothing to draw
    bare = [FakeRun("mnist", m, 32, 0, metrics={}) for m in ("gon", "ae_linear")]
    unscored = linear_encoder_section(bare, params(), confidence=0.95, headline_bn="batch")
    assert unscored.items[0].points.empty
    assert draw_linear_encoder_figure(unscored, tmp_path / "none", confidence=0.95) is unscored
