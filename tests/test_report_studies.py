"""The report's ablation-study sections on small fake inputs (no training).

The fakes have known losses, so each test states what the section must conclude (ELU best or
not, k > 1 lower or not, GON censored or not) and checks that the rendered text says it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import main_metrics, study_cell

from repro.config import DATASETS, Params, RunSpec, load_params
from repro.report import build_report
from repro.report.controls.convergence import convergence_section, paired_curve_difference
from repro.report.controls.cost import ParameterRow, parameter_rows
from repro.report.loaders import load_claims
from repro.report.sections import studies as report_studies
from repro.report.studies.activation import activation_section
from repro.report.studies.latent import latent_section
from repro.report.studies.multistep import multistep_section
from repro.report.studies.table import STUDIES_CSV_COLUMNS
from repro.report.study_runs import load_studies
from repro.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
PIXELS = 32 * 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUNNING_FACTOR = {"gon": 40.0, "ae": 1.02, "ae_linear": 1.05}
PROVENANCE = {"git_commit": "abc123", "generated_at": "2025-01-01T00:00:00Z"}
STUDY_HEADINGS = [
    "## Activation functions (claim: ELU is best)",
    "## Multi-step GON (k gradient steps)",
    "## Latent size (Table 1)",
    "## Linear-encoder control",
    "## Parameter count and convergence speed",
]

# Held-out test SSE per image (BN batch statistics) before the per-seed offset.
ACT_GON = {"elu": 20.0, "relu": 24.0, "tanh": 30.0, "silu": 22.0}
ACT_AE = {"elu": 18.0, "relu": 18.02, "tanh": 18.01, "silu": 18.03}
MULTI = {1: 20.0, 2: 18.0, 3: 17.5, 5: 19.99}
LATENT = {
    ("mnist", "gon"): {64: 15.0, 128: 12.0, 256: 10.0},
    ("mnist", "ae"): {64: 13.0, 128: 11.0, 256: 9.5},
    ("fashion_mnist", "gon"): {64: 30.0, 128: 27.0, 256: 25.0},
    ("fashion_mnist", "ae"): {64: 28.0, 128: 26.0, 256: 24.0},
}
# Main runs: on MNIST GON ends above 1.1 × the AE's final loss (never reaches the threshold).
MAIN = {
    ("mnist", "gon"): 9.5,
    ("mnist", "ae"): 8.0,
    ("mnist", "ae_linear"): 10.0,
    ("fashion_mnist", "gon"): 18.0,
    ("fashion_mnist", "ae"): 19.0,
    ("fashion_mnist", "ae_linear"): 21.0,
}
AFFINITY = {"gon": 3e-13, "ae_linear": 2e-14, "ae": 0.31}


def jitter(seed: int, i: int) -> float:
    """A per-seed offset plus a small, variant-dependent wobble (paired differences vary)."""
    return 0.3 * seed + 0.02 * ((seed + 1) * (i + 2) % 5)


def params(**studies: Any) -> Params:
    """The real params.yaml as the report stage gets it, with a few studies overrides."""
    p = load_params(ROOT / "params.yaml")
    s = dataclasses.replace(
        p.studies,
        activation=dataclasses.replace(p.studies.activation, activations=list(ACT_GON)),
        multistep=dataclasses.replace(p.studies.multistep, steps=list(MULTI)),
        lr=studies.pop("lr", None),  # train.lr unless a test raises it (params may set it)
        **studies,
    )
    report = dataclasses.replace(p.report, convergence_threshold=1.1)  # the fake curves' 1.1
    return dataclasses.replace(p, studies=s, report=report)


def losses(test_batch: float, method: str) -> dict[str, dict[str, dict[str, float]]]:
    """Study-record nesting: split, then BN mode."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split, scale in (("val", 0.97), ("test", 1.0)):
        out[split] = {}
        for mode, factor in (("batch", 1.0), ("running", RUNNING_FACTOR[method])):
            v = test_batch * scale * factor
            out[split][mode] = {"sse_per_image": v, "mse_per_pixel": v / PIXELS, "latent_norm": 1.0}
    return out


def record(study: str, dataset: str, method: str, seed: int, test: float, **kw: Any) -> dict:
    nz, act, k = kw.get("nz", 32), kw.get("activation", "elu"), kw.get("steps", 1)
    return {
        "study": study,
        "dataset": dataset,
        "method": method,
        "nz": nz,
        "activation": act,
        "steps": k,
        "step_size": 1.0,
        "learn_step_size": False,
        "label": f"{method}-{act}-nz{nz}-k{k}",
        "seed": seed,
        "status": "ok",
        "n_params": 74321 if method == "gon" else 148673,
        "n_params_decoder": 74321,
        "learned_step_size": None,
        "train_seconds": 10.0 * k,
        "seconds_per_epoch": 10.0 * k + 0.1 * seed,
        "graph_bytes_per_step": 28e6 * k,
        "cuda_peak_bytes": math.nan,
        "final_train_mse_per_pixel": test * 0.9 / PIXELS,
        "final_val_mse_per_pixel": test * 0.97 / PIXELS,
        "losses": losses(test, method),
        "mlflow_run_id": None,
    }


def write_cell(runs_dir: Path, study: str, cell: str, dataset: str, records: list[dict]) -> None:
    out = runs_dir / "studies" / study / cell
    out.mkdir(parents=True)
    study_cell(
        study=study,
        cell=cell,
        dataset=dataset,
        runs=records,
        epochs=1,
        train_images=9600,
        test_images=1000,
    ).write(out / "metrics.json")
    rows = []
    for r in records:
        if r["status"] != "ok":
            continue
        final = {s: r["losses"][s]["batch"]["mse_per_pixel"] for s in ("val", "test")}
        for step in (0, 50, 100, 150):
            rows.append(
                {k: r[k] for k in ("label", "method", "activation", "nz", "steps", "seed")}
                | {
                    "step": step,
                    "images_seen": 64 * step,
                    "train_seconds": 0.1 * step,
                    **{
                        f"{s}_mse_per_pixel": v * (1 + 2.0 / (1 + step / 50))
                        for s, v in final.items()
                    },
                }
            )
    pd.DataFrame(rows).to_csv(out / "curves.csv", index=False)


def write_studies(
    runs_dir: Path,
    *,
    act_gon: dict[str, float] = ACT_GON,
    diverged: tuple[str, str, int] | None = ("gon", "tanh", 2),
) -> None:
    for i, act in enumerate(ACT_GON):
        recs = []
        for method, base in (("gon", act_gon), ("ae", ACT_AE)):
            for seed in SEEDS:
                if diverged == (method, act, seed):
                    rec = record("activation", "mnist", method, seed, 0.0, activation=act)
                    rec = {k: rec[k] for k in ("study", "dataset", "method", "nz", "activation")}
                    recs.append(
                        rec
                        | {
                            "steps": 1,
                            "label": f"{method}-{act}-nz32-k1",
                            "seed": seed,
                            "status": "diverged",
                            "error": "loss 3.2e+04 above train.max_loss at epoch 1, step 17",
                        }
                    )
                    continue
                v = base[act] + jitter(seed, i)
                recs.append(record("activation", "mnist", method, seed, v, activation=act))
        write_cell(runs_dir, "activation", f"mnist-{act}", "mnist", recs)
    for i, k in enumerate(MULTI):
        recs = [
            record("multistep", "mnist", "gon", s, MULTI[k] + jitter(s, i), steps=k) for s in SEEDS
        ]
        write_cell(runs_dir, "multistep", f"mnist-k{k}", "mnist", recs)
    cells: dict[tuple[str, int], list[dict]] = {}
    for (dataset, method), per_nz in LATENT.items():
        for nz, v in per_nz.items():
            cells.setdefault((dataset, nz), []).append(
                record("latent", dataset, method, 0, v, nz=nz)
            )
    for (dataset, nz), recs in cells.items():
        write_cell(runs_dir, "latent", f"{dataset}-nz{nz}", dataset, recs)


def write_main_runs(
    runs_dir: Path, base: dict = MAIN, *, nz: int = 32, curves: bool = True
) -> None:
    """Main runs (BN mode first, then split) with affinity errors and curve.csv."""
    for (dataset, method), v0 in base.items():
        for seed in SEEDS:
            run_dir = RunSpec(dataset, method, nz, seed).run_dir(runs_dir)
            run_dir.mkdir(parents=True)
            v = v0 + jitter(seed, len(method))
            nested = losses(v, method)
            by_mode = {m: {s: nested[s][m] for s in ("val", "test")} for m in ("batch", "running")}
            main_metrics(
                dataset=dataset,
                method=method,
                nz=nz,
                seed=seed,
                n_params={"gon": 74321, "ae": 148673, "ae_linear": 107090}[method],
                losses=by_mode,
                affinity_error={"batch": AFFINITY[method], "running": AFFINITY[method]},
            ).write(run_dir / "metrics.json")
            pd.DataFrame(
                {
                    "epoch": [1, 2],
                    "train_mse_per_pixel": [v / PIXELS * 1.5, v / PIXELS * 1.1],
                    "val_mse_per_pixel": [v / PIXELS * 1.4, v / PIXELS],
                    "seconds": [50.0, 50.0],
                    "images_seen": [32000, 64000],
                }
            ).to_csv(run_dir / "history.csv", index=False)
            if curves:
                steps = range(0, 1001, 100)
                tau = {"gon": 150.0, "ae": 200.0, "ae_linear": 300.0}[method]
                pd.DataFrame(
                    {
                        "step": list(steps),
                        "images_seen": [64 * s for s in steps],
                        "train_seconds": [s * (0.05 if method == "gon" else 0.02) for s in steps],
                        "test_mse_per_pixel": [
                            v / PIXELS * (1 + 3 * math.exp(-s / tau)) for s in steps
                        ],
                    }
                ).to_csv(run_dir / "curve.csv", index=False)


def build(root: Path, p: Params | None = None) -> str:
    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = build_report(
        runs_dir, root / "data", root / "reports", params=p or params(), provenance=PROVENANCE
    )
    return path.read_text()


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    nxt = re.search(r"^## ", rest, flags=re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("studies")
    write_studies(root / "runs")
    write_main_runs(root / "runs")
    return root, build(root)


# --------------------------------------------------------------------------------------------


def test_sections_in_order_after_bn_modes_and_before_gfe(full: tuple[Path, str]) -> None:
    _, text = full
    for marker in ("{{", "}}", "{%", "%}"):
        assert marker not in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    i = headings.index("## Both BatchNorm modes")
    assert headings[i + 1 : i + 6] == STUDY_HEADINGS
    assert headings[i + 6 : i + 9] == [
        "## The variational GON against a VAE",
        "## The implicit GON (SIREN decoder)",
        "## Gradient Flow Encoding: data efficiency",
    ]


def test_activation_elu_best_with_claim_and_diverged_run(full: tuple[Path, str]) -> None:
    _, text = full
    a = section(text, STUDY_HEADINGS[0])
    claim = next(c for c in load_claims()["claims"] if c["id"] == "repro-claim2-elu-best")
    assert claim["quantity"] in a
    assert "**Reduced scale** (`quick` profile" in a
    assert "9,600 training images × 1 epoch(s) = 150 optimiser steps of batch 64" in a
    assert "per run, nz = 32; Adam learning rate 0.0001; seeds 0, 1, 2" in a
    assert "Headline BatchNorm mode: **BN batch statistics**" in a
    assert "**GON, BN batch statistics (headline):** Outcome: **elu best**" in a
    assert "- AE, BN batch statistics: Outcome: **elu not distinguishable**" in a
    # relu − elu for GON, headline mode, over the three seeds
    diffs = [ACT_GON["relu"] - ACT_GON["elu"] + jitter(s, 1) - jitter(s, 0) for s in SEEDS]
    ci = mean_ci(diffs)
    assert f"{ci.mean:.3g} [{ci.low:.3g}, {ci.high:.3g}]" in a
    # the diverged run is listed and not averaged: two seeds left for GON tanh
    assert "`activation/mnist-tanh/gon-tanh-nz32-k1-s2`: diverged (loss 3.2e+04" in a
    assert re.search(r"\| GON \| tanh \| 2 \| 1 \|", a)
    assert "![Activation study](figures/study_activation.png)" in a


def test_activation_not_best_when_relu_is_clearly_lower(tmp_path: Path) -> None:
    write_studies(tmp_path / "runs", act_gon={**ACT_GON, "relu": 15.0}, diverged=None)
    runs, curves, _ = load_studies(tmp_path / "runs" / "studies")
    section = activation_section(
        runs, curves, params(), load_claims(), confidence=0.95, headline_bn="batch"
    )
    # the figure's learning curves: GON's only, 4 activations × 3 seeds × 4 curve points
    gon_curves = section.plot.args[0]
    assert set(gon_curves["method"]) == {"gon"} and len(gon_curves) == 48
    a = section.context
    assert a.headline_outcome is not None and a.headline_outcome.sentence is not None
    sentence = a.headline_outcome.sentence
    assert sentence.startswith("Outcome: **elu not best**")
    assert "relu has the lowest mean" in sentence


def test_multistep_lower_for_some_k_with_cost_ratios(full: tuple[Path, str]) -> None:
    _, text = full
    m = section(text, STUDY_HEADINGS[1])
    claim = next(c for c in load_claims()["claims"] if c["id"] == "repro-extension-two-steps")
    assert claim["quantity"] in m
    assert "Step size: **fixed** at 1.0" in m
    assert "**Yes** for k = 2, 3" in m  # 5 is within noise of k = 1
    assert "k = 2 takes 1.99× the seconds per epoch and 2× the graph bytes per step" in m
    assert "| 1 | 3 | 0 |" in m and "26.7" in m  # graph MiB: 28e6 / 2**20
    # training loss in both units: MSE per pixel × 1024 = SSE per image
    train = mean_ci([MULTI[1] * 0.9 + 0.9 * jitter(s, 0) for s in SEEDS])
    assert f"{train.mean:.4g} [{train.low:.4g}, {train.high:.4g}]" in m
    assert "![Multi-step GON](figures/study_multistep.png)" in m


def test_multistep_learned_step_size_is_reported(tmp_path: Path) -> None:
    recs = []
    for k in (1, 2):
        for s in SEEDS:
            r = record("multistep", "mnist", "gon", s, MULTI[k] + jitter(s, k), steps=k)
            recs.append(r | {"learn_step_size": True, "learned_step_size": 0.8 + 0.01 * s})
        write_cell(tmp_path / "runs", "multistep", f"mnist-k{k}", "mnist", recs[-3:])
    runs, _, _ = load_studies(tmp_path / "runs" / "studies")
    p = params()
    multistep = dataclasses.replace(p.studies.multistep, learn_step_size=True)
    p = dataclasses.replace(p, studies=dataclasses.replace(p.studies, multistep=multistep))
    m = multistep_section(runs, p, load_claims(), confidence=0.95, headline_bn="batch").context
    assert m.learn_step_size and m.rows[1].learned_step_size.mean == pytest.approx(0.81)
    assert m.lower_test == [2]


def test_latent_rows_with_published_value_and_single_seed(full: tuple[Path, str]) -> None:
    _, text = full
    lat = section(text, STUDY_HEADINGS[2])
    assert "unstated; most plausibly SSE per image" in lat
    assert "after 500 epochs" in lat
    v = LATENT[("mnist", "gon")][64] * 0.97  # validation = 0.97 × test in the fakes
    row = (
        f"| MNIST | 64 | GON | latent study | 1 | {v:.4g} [no CI: n = 1] | "
        f"{v / PIXELS:.4g} [no CI: n = 1] |"
    )
    assert row in lat
    assert f"| 0.59 | {v / 0.59:.3g}× |" in lat
    assert "nz 64: 2, one seed, not tested" in lat
    assert "GON's validation loss falls with nz (nz = 64, 128, 256), as in Table 1." in lat
    assert "**BN running statistics**" in lat  # the other mode's table


def test_latent_takes_main_runs_at_table1_nz(tmp_path: Path) -> None:
    write_main_runs(tmp_path / "runs", nz=64, curves=False)
    from repro.report.loaders import load_runs

    main, _ = load_runs(tmp_path / "runs")
    lat = latent_section(
        [], main, params(), load_claims(), confidence=0.95, headline_bn="batch"
    ).context
    rows = [r for r in lat.rows if r.source == "main runs" and r.method_id == "gon"]
    assert {r.dataset_id for r in rows} == {"mnist", "fashion_mnist"}
    assert all(r.n == 3 and r.published for r in rows)
    assert [s.name for s in lat.sources] == ["main runs"]


def test_linear_encoder_control(full: tuple[Path, str]) -> None:
    _, text = full
    lin = section(text, STUDY_HEADINGS[3])
    assert "constrained linear encoder" in lin
    assert "| AE (linear encoder) | 3 |" in lin
    assert "3e-13" in lin and "2e-14" in lin and "0.31" in lin
    mnist = lin[lin.index("### MNIST") : lin.index("### Fashion-MNIST")]
    assert "GON was **significantly lower than** the freely learned linear encoder" in mnist
    assert "**significantly higher than** the convolutional AE" in mnist
    fashion = lin[lin.index("### Fashion-MNIST") :]
    assert "**significantly lower than** the convolutional AE" in fashion


def test_parameter_counts_and_ratio(full: tuple[Path, str]) -> None:
    _, text = full
    cost = section(text, STUDY_HEADINGS[4])
    assert "| main runs | AE (linear encoder) | conv | 32 | elu | — | 107,090 |" in cost
    assert "| multistep study | GON | conv | 32 | elu | 5 | 74,321 | 74,321 |" in cost
    assert f"GON/AE = **{74321 / 148673:.4g}**: main runs, nz 32; activation study, nz 32" in cost
    assert (
        f'"half the parameters" of an autoencoder. Measured GON/AE parameter\nratio: **{74321 / 148673:.4g}**'
        in cost
    )


def test_parameter_rows_include_efficiency_runs() -> None:
    class Eff:
        method = "gfe_adaptive"
        metrics = {"architecture": "mlp", "nz": 20, "n_params": 1687944}

    rows = parameter_rows([], [], [Eff()], params().train)
    assert rows == (
        ParameterRow(
            source="data efficiency",
            method="gfe_adaptive",
            architecture="mlp",
            nz=20,
            activation=None,
            steps=None,
            n_params=(1687944,),
            n_params_decoder=(),
        ),
    )
    assert rows[0].method_label == "GFE (adaptive step)"


def test_convergence_censored_runs_are_not_averaged(full: tuple[Path, str]) -> None:
    _, text = full
    conv = section(text, STUDY_HEADINGS[4])
    mnist = conv[conv.index("**MNIST, nz 32**") : conv.index("**Fashion-MNIST, nz 32**")]
    # GON on MNIST ends above the threshold in every seed: all censored, no mean printed
    assert re.search(r"\| GON \| 3 \| 0 \| n/a \| n/a \| seed 0: 1,000", mnist)
    assert "**No**: GON never reached the threshold in its 3 runs (censored)" in mnist
    fashion = conv[conv.index("**Fashion-MNIST, nz 32**") :]
    assert "Per optimiser step: **GON faster**" in fashion
    assert "![Convergence speed](figures/study_convergence.png)" in conv


def test_convergence_mean_over_reached_runs_only(tmp_path: Path) -> None:
    write_main_runs(tmp_path / "runs", {k: v for k, v in MAIN.items() if k[0] == "mnist"})
    # seed 2 of GON never gets below the threshold: its curve is flat and high
    curve = RunSpec("mnist", "gon", 32, 2).run_dir(tmp_path / "runs") / "curve.csv"
    c = pd.read_csv(curve)
    c["test_mse_per_pixel"] = 1.0
    c.to_csv(curve, index=False)
    for seed in (0, 1):  # the other two GON seeds end well below it
        path = RunSpec("mnist", "gon", 32, seed).run_dir(tmp_path / "runs") / "curve.csv"
        c = pd.read_csv(path)
        c["test_mse_per_pixel"] = c["test_mse_per_pixel"] * 0.5
        c.to_csv(path, index=False)
    from repro.report.loaders import load_runs

    main, _ = load_runs(tmp_path / "runs")
    conv = convergence_section(main, params(), confidence=0.95)
    gon = next(r for r in conv.items[0].rows if r.method_id == "gon")
    assert gon.reached == 2 and [x.seed for x in gon.censored] == [2]
    assert gon.n == 3
    assert gon.steps is not None and gon.steps.n == 2  # the censored seed is not in the mean
    assert conv.items[0].gon_vs_ae is not None
    assert conv.items[0].gon_vs_ae.steps_verdict.startswith("GON not faster")


def test_figures_and_studies_csv(full: tuple[Path, str]) -> None:
    root, _ = full
    for name in ("activation", "multistep", "latent", "linear_encoder", "convergence"):
        png = root / "reports" / "figures" / f"study_{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
    table = pd.read_csv(root / "reports" / "studies.csv")
    assert list(table.columns) == STUDIES_CSV_COLUMNS
    sel = table[
        (table["study"] == "activation")
        & (table["method"] == "gon")
        & (table["activation"] == "tanh")
        & (table["bn_mode"] == "batch")
        & (table["split"] == "test")
    ].iloc[0]
    assert sel["n"] == 2 and sel["n_failed"] == 1
    ci = mean_ci([ACT_GON["tanh"] + jitter(s, 2) for s in (0, 1)])
    assert sel["mean"] == pytest.approx(ci.mean) and sel["ci_high"] == pytest.approx(ci.high)


def test_three_methods_in_the_main_tables(full: tuple[Path, str]) -> None:
    _, text = full
    headline = section(text, "## Headline")
    assert "| AE (linear encoder) | 32 | 3 |" in headline
    mnist = headline[headline.index("### MNIST") : headline.index("### Fashion-MNIST")]
    assert "**AE had the lowest mean test loss** of the 3 models" in mnist
    assert "SSE per image for GON, the runner-up" in mnist
    for name in ("test_losses.png", "training_curves.png"):
        assert (full[0] / "reports" / "figures" / name).read_bytes()[:8] == PNG_MAGIC


def test_every_section_not_run_without_inputs(tmp_path: Path) -> None:
    text = build(tmp_path)
    for heading in STUDY_HEADINGS:
        assert "**Not run**" in section(text, heading), heading
    assert "**Not run**: no main run has a `curve.csv`" in text.split("### Convergence speed")[1]
    assert not list((tmp_path / "reports").glob("figures/study_*.png"))
    assert pd.read_csv(tmp_path / "reports" / "studies.csv").empty


def test_cifar10_line_follows_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unsupported = tuple(d for d in DATASETS if d != "cifar10")
    monkeypatch.setattr(report_studies, "DATASETS", unsupported)
    top = build(tmp_path / "a").split("## Headline")[0]
    assert "CIFAR-10: **not supported** by this version of the pipeline" in top
    monkeypatch.setattr(report_studies, "DATASETS", (*unsupported, "cifar10"))
    p = params()
    p = dataclasses.replace(
        p, data=dataclasses.replace(p.data, datasets=[*p.data.datasets, "cifar10"])
    )
    top = build(tmp_path / "b", p).split("## Headline")[0]
    assert "CIFAR-10: supported via torchvision" in top
    assert "listed in `data.datasets` but **not run**" in top


def test_a_raised_study_learning_rate_is_stated() -> None:
    p = params(lr=1.0e-3)
    a = activation_section(
        [], pd.DataFrame(), p, load_claims(), confidence=0.95, headline_bn="batch"
    ).context
    assert a.scale.lr == 1.0e-3 and a.scale.lr_differs
    assert a.status == "not run"


def test_gon_minus_each_autoencoder_along_training_is_paired_by_seed() -> None:
    """The paired difference at each curve step: GON − AE over seeds, with the t-interval."""
    rows = []
    for seed, (g10, a10) in enumerate(((1.0, 3.0), (2.0, 3.0), (3.0, 6.0))):
        rows += [
            {"step": 0, "seed": seed, "method": "gon", "test_mse_per_pixel": 5.0},
            {"step": 0, "seed": seed, "method": "ae", "test_mse_per_pixel": 5.0},
            {"step": 10, "seed": seed, "method": "gon", "test_mse_per_pixel": g10},
            {"step": 10, "seed": seed, "method": "ae", "test_mse_per_pixel": a10},
        ]
    d = paired_curve_difference(pd.DataFrame(rows), "ae", 0.95).set_index("step")
    assert d.loc[0, "mean"] == 0.0 and d.loc[0, "n"] == 3
    # differences -2, -1, -3: mean -2, SD 1, half-width t_{0.975, 2} / sqrt(3) = 2.4841
    assert d.loc[10, "mean"] == -2.0
    assert math.isclose(d.loc[10, "high"], -2.0 + 4.302652729911275 / math.sqrt(3), rel_tol=1e-9)
    assert paired_curve_difference(pd.DataFrame(rows), "ae_linear", 0.95).empty
