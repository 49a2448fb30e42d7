"""Report generation on a synthetic runs directory (no training involved).

The fake runs have known losses, so the tests can check that every number in results.csv is
the t-interval of the inputs, and that generated sentences follow the numbers (swap the numbers
and the sentence must flip).
"""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from repro.config import Params, RunSpec, params_from_dict
from repro.io import write_json
from repro.records import EfficiencyMetrics, MainMetrics
from repro.report import build_report
from repro.report.loaders import load_claims
from repro.report.sections.protocol import protocol_differences
from repro.stats import mean_ci
from tests.factories import diagnosis_record, encoding_record

DATASETS = ("mnist", "fashion_mnist")
METHODS = ("gon", "ae")
SEEDS = (0, 1, 2)
NZ = 32
PIXELS = 32 * 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESIZE = "bilinear with antialiasing (test manifest)"

# Test SSE per image (batch-statistics BN) per dataset × method, before a per-seed offset.
BASE_TEST_SSE = {
    ("mnist", "gon"): 9.0,
    ("mnist", "ae"): 12.0,
    ("fashion_mnist", "gon"): 20.0,
    ("fashion_mnist", "ae"): 18.0,
}
RUNNING_FACTOR = {"gon": 40.0, "ae": 1.02}  # running-stats loss / batch-stats loss

# Data-efficiency study (GFE): final test BCE per method × train size, before a per-seed offset,
# and the training seconds per optimiser step of each method (GFE is by far the slowest).
EFF_METHODS = ("gfe_adaptive", "gon", "ae")
EFF_SIZES = (100, 1000)
EFF_NZ = 20
EFF_STEPS = 60
EFF_POINTS = (0, 20, 40, 60)
EFF_BASE = {
    ("gfe_adaptive", 100): 0.20,
    ("gon", 100): 0.26,
    ("ae", 100): 0.30,
    ("gfe_adaptive", 1000): 0.15,
    ("gon", 1000): 0.17,
    ("ae", 1000): 0.152,
}
STEP_SECONDS = {"gfe_adaptive": 2.0, "gon": 0.05, "ae": 0.01}
STEP_NFE = {"gfe_adaptive": 150, "gon": 1, "ae": 0}
SSE_PER_BCE = 50.0
# Convergence study: per-image loss 0.7·exp(−iteration·(1 + 0.03·image)/rate) + 0.05.
CONV_IMAGES = 16
CONV_ITERATIONS = 50
CONV_RATES = {"first_order": 40.0, "second_order": 15.0, "adaptive_step": 5.0}
CONV_NFE_PER_IT = {"first_order": 1, "second_order": 1, "adaptive_step": 3}
CONV_LAST = {"first_order": 50, "second_order": 50, "adaptive_step": 30}
BENCH = {
    "backprop": {"seconds": 12.0, "peak_rss_mib": 900.0, "cos": 1.0, "rel": 0.0},
    "adjoint": {"seconds": 30.0, "peak_rss_mib": 400.0, "cos": 0.9999, "rel": 0.01},
    "approximate": {"seconds": 3.0, "peak_rss_mib": 350.0, "cos": 0.93, "rel": 0.37},
}


# The ablation-study sections (tested in test_report_studies.py) come between these and the GFE.
STUDY_HEADINGS = [
    "## Activation functions (claim: ELU is best)",
    "## Multi-step GON (k gradient steps)",
    "## Latent size (Table 1)",
    "## Linear-encoder control",
    "## Parameter count and convergence speed",
]
GFE_HEADINGS = [
    "## Gradient Flow Encoding: data efficiency",
    "## Gradient Flow Encoding: convergence per iteration",
    "## Gradient Flow Encoding: decoder gradients",
]


def params_dict(profile: str = "quick", seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    """The params of the fake runs, as a mapping a test may change before it is typed."""
    return {
        "profile": profile,
        "data": {
            "datasets": list(DATASETS),
            "sources": ["torchvision", "mirror", "registry"],
            "mirror_dir": None,
            "raw_dir": "data/raw",
            "image_size": 32,
            "synthetic_sizes": {"train": 512, "val": 128, "test": 128},
        },
        "model": {"ngf": 16, "activation": "elu", "nz": [NZ]},
        "train": {
            "methods": list(METHODS),
            "seeds": list(seeds),
            "device": "auto",
            "epochs": 5 if profile == "quick" else 500,
            "batch_size": 64,
            "lr": 1.0e-4,
            "betas": [0.9, 0.999],
            "train_images": 50000,
            "val_images": 2000,
            "gon_steps": 1,
            "gon_step_size": 1.0,
            "num_threads": 2,
        },
        "evaluate": {"batch_size": 64, "headline_bn": "batch", "order_shuffles": 3},
        "report": {"confidence": 0.95},
        "tracking": {"enabled": True, "experiment": "gon-repro"},
        "gfe": {
            "loss": "bce",
            "alpha": 1.0,
            "tau": 1000.0,
            "solver": "dopri5",
            "rtol": 1.0e-3,
            "atol": 1.0e-4,
            "step_size": 1.0,
            "grad_mode": "approximate",
            "max_nfe": 1000,
            "adaptive": {"h0": 1.0, "h_max": 10.0, "sigma": 1.0e-5},
        },
        "efficiency": {
            "dataset": "mnist",
            "methods": list(EFF_METHODS),
            "architecture": "mlp",
            "nz": EFF_NZ,
            "train_sizes": list(EFF_SIZES),
            "seeds": list(seeds),
            "steps": EFF_STEPS,
            "batch_size": 16,
            "lr": 5.0e-4,
            "loss": "bce",
            "eval_images": 256,
            "eval_points": 3,
        },
        "convergence": {
            "method": "gfe_adaptive",
            "train_size": 1000,
            "seed": 0,
            "images": CONV_IMAGES,
            "iterations": CONV_ITERATIONS,
            "step_size": 1.0,
        },
    }


def make_params(profile: str = "quick", seeds: tuple[int, ...] = SEEDS) -> Params:
    return params_from_dict(params_dict(profile, seeds))


PROVENANCE = {
    "git_commit": "abc123def456",
    "git_dirty": False,
    "params_sha256": "f" * 64,
    "torch_version": "2.x",
    "cuda": None,
    "device": "cpu",
    "hardware": "test machine",
    "python": "3.11",
    "generated_at": "2025-01-01T00:00:00Z",
}


def tiny_png(color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def mlflow_id(dataset: str, method: str, seed: int) -> str:
    return f"run-{dataset}-{method}-{seed}-0123abcd"


def fake_test_sse(dataset: str, method: str, seed: int, base: dict | None = None) -> float:
    return (base or BASE_TEST_SSE)[(dataset, method)] + 0.25 * seed + (0.1 if seed == 1 else 0.0)


def write_fake_runs(
    root: Path,
    *,
    datasets: tuple[str, ...] = DATASETS,
    seeds: tuple[int, ...] = SEEDS,
    base: dict | None = None,
    epochs: int = 4,
) -> tuple[Path, Path]:
    """RunSpec.run_dir of every run with metrics, history and recon; reference; manifests."""
    runs_dir, data_dir = root / "runs", root / "data"
    for dataset in datasets:
        for method in METHODS:
            for seed in seeds:
                name = f"{method}-nz{NZ}-s{seed}"
                run_dir = RunSpec(dataset, method, NZ, seed).run_dir(runs_dir)
                run_dir.mkdir(parents=True)
                batch_test = fake_test_sse(dataset, method, seed, base)
                losses = {}
                for mode, factor in (("batch", 1.0), ("running", RUNNING_FACTOR[method])):
                    losses[mode] = {
                        split: {"sse_per_image": v, "mse_per_pixel": v / PIXELS}
                        for split, v in (
                            ("val", batch_test * factor * 0.97),
                            ("test", batch_test * factor),
                        )
                    }
                spread = {
                    "shuffles": 3,
                    "test_sse_per_image_std": 0.01,
                    "test_sse_per_image_max_abs_diff": 0.02,
                }
                MainMetrics(
                    run=f"{dataset}/{name}",
                    dataset=dataset,
                    method=method,
                    nz=NZ,
                    seed=seed,
                    activation="elu",
                    n_params=74321 if method == "gon" else 148673,
                    epochs=epochs,
                    train_images=50000,
                    train_seconds=100.0 + seed,
                    eval_seconds=10.0,
                    device="cpu",
                    profile="quick",
                    eval_batch_size=64,
                    val_images=1000,
                    test_images=10000,
                    curve_images=1000,
                    headline_bn="batch",
                    final_train_mse_per_pixel=batch_test / PIXELS,
                    mlflow_run_id=mlflow_id(dataset, method, seed),
                    affinity_error=None,
                    losses=losses,
                    batch_order_spread=spread,
                    running_order_spread=spread | {"test_sse_per_image_std": 0.0},
                ).write(run_dir / "metrics.json")
                epoch = range(1, epochs + 1)
                pd.DataFrame(
                    {
                        "epoch": list(epoch),
                        "train_mse_per_pixel": [batch_test / PIXELS * (1 + 2.0 / e) for e in epoch],
                        "val_mse_per_pixel": [batch_test / PIXELS * (1 + 2.2 / e) for e in epoch],
                        "seconds": [20.0 + seed] * epochs,
                        "images_seen": [49984 * e for e in epoch],
                    }
                ).to_csv(run_dir / "history.csv", index=False)
                (run_dir / "recon.png").write_bytes(tiny_png(40 * seed))
        write_json(
            runs_dir / dataset / "reference.json",
            {
                "dataset": dataset,
                "split": "test",
                "zero_image": {"sse_per_image": 100.0, "mse_per_pixel": 100.0 / PIXELS},
                "mean_train_image": {"sse_per_image": 50.0, "mse_per_pixel": 50.0 / PIXELS},
                "pca": {
                    str(nz): {"sse_per_image": 15.0, "mse_per_pixel": 15.0 / PIXELS}
                    for nz in (32, 64)
                },
            },
        )
    for dataset in DATASETS:
        write_json(
            data_dir / f"{dataset}.manifest.json",
            {
                "dataset": dataset,
                "source": "mirror",
                "resize_method": RESIZE,
                "files": {
                    "train": {"sha256": f"{dataset}-train-sha"},
                    "test": {"sha256": f"{dataset}-test-sha", "images_resized_sha256": "rs"},
                },
            },
        )
    return runs_dir, data_dir


def build(tmp_path: Path, *, profile: str = "quick", **kwargs: Any) -> tuple[Path, str]:
    runs_dir, data_dir = write_fake_runs(tmp_path, **kwargs)
    seeds = kwargs.get("seeds", SEEDS)
    report = build_report(
        runs_dir,
        data_dir,
        tmp_path / "reports",
        params=make_params(profile, seeds),
        provenance=PROVENANCE,
    )
    return report, report.read_text()


def section(text: str, heading: str, level: str = "###") -> str:
    """Text from ``heading`` up to the next heading of the same or a higher level."""
    start = text.index(f"{level} {heading}\n")
    rest = text[start + len(heading) + len(level) + 2 :]
    nxt = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return build(tmp_path_factory.mktemp("quick"))


def test_report_exists_and_is_fully_rendered(quick_report: tuple[Path, str]) -> None:
    path, text = quick_report
    assert path.name == "report.md" and path.is_file()
    for marker in ("{{", "}}", "{%", "%}", "{#"):
        assert marker not in text
    assert "Profile: **`quick`**" in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Executive summary",
        "## Claims and verdicts",
        "## Headline",
        "## Both BatchNorm modes",
        *STUDY_HEADINGS,
        "## The variational GON against a VAE",
        "## The implicit GON (SIREN decoder)",
        *GFE_HEADINGS,
        "## At GPU scale",
        "## Speed: our training loop against the original",
        "## Published numbers",
        "## Parameters",
        "## Figures",
        "## Limitations",
        "## Differences from the published protocol",
        "## Provenance",
    ]


def test_reduced_scale_banner_only_when_not_paper(
    quick_report: tuple[Path, str], tmp_path: Path
) -> None:
    _, text = quick_report
    assert "REDUCED-SCALE RUN" in text
    assert "5 epochs (published: 500 epochs" in text  # from params and claims.yaml
    _, paper = build(tmp_path, profile="paper")
    assert "REDUCED-SCALE" not in paper
    assert "Profile: **`paper`**" in paper


def test_headline_rows_per_dataset_and_method(quick_report: tuple[Path, str]) -> None:
    _, text = quick_report
    headline = section(text, "Headline", "##")
    for label, dataset in (("MNIST", "mnist"), ("Fashion-MNIST", "fashion_mnist")):
        part = section(headline, label)
        for method, name in (("gon", "GON"), ("ae", "AE")):
            values = [fake_test_sse(dataset, method, s) for s in SEEDS]
            ci = mean_ci(values)
            assert f"| {name} | {NZ} | 3 | {ci.mean:.4g} [{ci.low:.4g}, {ci.high:.4g}] |" in part
        assert "| reference: all-zero image |" in part
        assert "| reference: mean training image |" in part
        assert "| reference: PCA, 32 components |" in part
        assert "PCA, 64 components" not in part  # only the measured nz


def test_lower_mean_sentence_follows_the_numbers(
    quick_report: tuple[Path, str], tmp_path: Path
) -> None:
    _, text = quick_report
    mnist = section(section(text, "Headline", "##"), "MNIST")
    assert "**GON had the lower mean test loss**" in mnist
    assert "do not overlap" in mnist  # 9.x vs 12.x with sd ~0.3
    swapped = {
        key: BASE_TEST_SSE[(key[0], "ae" if key[1] == "gon" else "gon")] for key in BASE_TEST_SSE
    }
    _, text2 = build(tmp_path, base=swapped)
    mnist2 = section(section(text2, "Headline", "##"), "MNIST")
    assert "**AE had the lower mean test loss**" in mnist2
    assert "**GON had the lower mean test loss**" not in mnist2


def test_overlapping_intervals_are_reported(tmp_path: Path) -> None:
    close = {**BASE_TEST_SSE, ("mnist", "ae"): BASE_TEST_SSE[("mnist", "gon")] + 0.05}
    _, text = build(tmp_path, base=close)
    mnist = section(section(text, "Headline", "##"), "MNIST")
    assert "intervals overlap" in mnist


def test_bn_modes_ratio_sentence(quick_report: tuple[Path, str]) -> None:
    _, text = quick_report
    bn = section(section(text, "Both BatchNorm modes", "##"), "MNIST")
    assert "BN running statistics" in bn and "BN batch statistics" in bn
    assert f"**{RUNNING_FACTOR['gon']:.3g}×**" in bn
    assert f"**{RUNNING_FACTOR['ae']:.3g}×**" in bn
    assert "Batch-order spread" in bn


def test_published_numbers_with_source(quick_report: tuple[Path, str]) -> None:
    _, text = quick_report
    pub = section(text, "Published numbers", "##")
    claims = load_claims()
    assert claims["sources"]["repro_report"]["cite"] in pub
    assert claims["sources"]["julia_repro"]["cite"] in pub
    table1 = [c for c in claims["claims"] if c["id"].startswith("repro-table1-")]
    assert len(table1) == 6
    for c in table1:
        printed = f"{c['value']:.{c['decimals']}f}"
        assert re.search(rf"\| {c['nz']} \| {re.escape(printed)} \|", pub), printed
    for printed in ("0.59", "2.40", "0.51", "1.36", "0.40", "1.10"):
        assert f"| {printed} |" in pub
    assert "no main run at this nz in this profile" in pub
    assert "dataset not in this study" in pub  # CIFAR-10 of the Julia reproduction
    assert "most plausibly SSE per image" in pub


def test_parameters_and_provenance(quick_report: tuple[Path, str]) -> None:
    _, text = quick_report
    params_section = section(text, "Parameters", "##")
    assert "| GON | 32 | 74,321 |" in params_section
    assert "| AE | 32 | 148,673 |" in params_section
    assert f"GON/AE = **{74321 / 148673:.4g}**" in params_section
    prov = section(text, "Provenance", "##")
    for dataset in DATASETS:
        for seed in SEEDS:
            for method in METHODS:
                assert mlflow_id(dataset, method, seed) in prov
        assert f"{dataset}-train-sha" in prov and f"{dataset}-test-sha" in prov
    assert f"resize_method: `{RESIZE}`" in prov
    assert "images_resized_sha256: `rs`" in prov and "files.test.images_resized_sha256" in prov
    assert PROVENANCE["git_commit"] in prov
    total = sum(100.0 + s + 10.0 for s in SEEDS) * len(DATASETS) * len(METHODS)
    assert f"Main runs: {total:,.1f} s" in prov and "Compute, as each stage measured it" in prov


def test_differences_list(quick_report: tuple[Path, str]) -> None:
    _, text = quick_report
    diffs = section(text, "Differences from the published protocol", "##")
    items = [line for line in diffs.splitlines() if line.startswith("- ")]
    assert items == [f"- {d}" for d in protocol_differences(make_params(), resize_methods=[RESIZE])]
    assert any(f"with {RESIZE}" in d for d in items)
    assert any("500 epochs" in d and "1,001" in d for d in items)


def test_protocol_differences_follow_params() -> None:
    base = protocol_differences(make_params())
    assert any("5 epochs here" in d for d in base)
    assert any("3 per configuration" in d for d in base)
    assert any("held-out" in d.lower() for d in base)
    assert any("dropped" in d for d in base)
    assert any("Resize" in d for d in base)
    assert not any(d.startswith("Training images:") for d in base)  # 50,000 matches
    changed = params_dict()
    changed["train"].update(epochs=7, train_images=1000, lr=2e-4)
    diffs = protocol_differences(params_from_dict(changed))
    assert any("7 epochs here" in d for d in diffs)
    assert any(d.startswith("Training images: 1,000") for d in diffs)
    assert any(d.startswith("Learning rate: 0.0002") for d in diffs)
    assert protocol_differences(copy.deepcopy(make_params())) == base


def test_figures_exist_and_are_png(quick_report: tuple[Path, str]) -> None:
    path, text = quick_report
    fig_dir = path.parent / "figures"
    expected = {"training_curves.png", "training_curves_time.png", "test_losses.png"}
    expected |= {f"recon_{d}_{m}.png" for d in DATASETS for m in METHODS}
    assert expected <= {p.name for p in fig_dir.iterdir()}
    for name in expected:
        data = (fig_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        assert f"(figures/{name})" in text
    # The recon copy is the seed-0 grid.
    assert (fig_dir / "recon_mnist_gon.png").read_bytes() == tiny_png(0)
    with Image.open(fig_dir / "training_curves.png") as img:
        assert img.size[0] > 600 and img.size[1] > 300


def test_results_csv_matches_mean_ci(quick_report: tuple[Path, str]) -> None:
    path, _ = quick_report
    results = pd.read_csv(path.parent / "results.csv")
    assert len(results) == len(DATASETS) * len(METHODS) * 2 * 2  # × bn_mode × split
    keys = results[["dataset", "method", "nz", "bn_mode", "split"]].drop_duplicates()
    assert len(keys) == len(results)
    assert set(results["unit"]) == {"sse_per_image"}
    assert set(results["n"]) == {3}
    for _, row in results.iterrows():
        factor = 1.0 if row["bn_mode"] == "batch" else RUNNING_FACTOR[row["method"]]
        split_factor = 0.97 if row["split"] == "val" else 1.0
        values = [
            fake_test_sse(row["dataset"], row["method"], s) * factor * split_factor for s in SEEDS
        ]
        ci = mean_ci(values, 0.95)
        assert row["mean"] == pytest.approx(ci.mean)
        assert row["ci_low"] == pytest.approx(ci.low)
        assert row["ci_high"] == pytest.approx(ci.high)
        assert row["mse_per_pixel_mean"] == pytest.approx(ci.mean / PIXELS)
        assert bool(row["headline"]) == (row["bn_mode"] == "batch")


def test_missing_dataset_is_not_run(tmp_path: Path) -> None:
    path, text = build(tmp_path, datasets=("mnist",))
    headline = section(text, "Headline", "##")
    assert "**Not run**" in section(headline, "Fashion-MNIST")
    assert "listed in the params but **not run**: Fashion-MNIST" in text
    assert "dataset not run in this profile" in section(text, "Published numbers", "##")
    results = pd.read_csv(path.parent / "results.csv")
    assert set(results["dataset"]) == {"mnist"}
    assert not (path.parent / "figures" / "recon_fashion_mnist_gon.png").exists()


def test_single_seed_has_no_interval(tmp_path: Path) -> None:
    path, text = build(tmp_path, seeds=(0,))
    assert "[no CI: n = 1]" in text
    assert "intervals are undefined" in text
    results = pd.read_csv(path.parent / "results.csv")
    assert results["ci_low"].isna().all() and set(results["n"]) == {1}
    assert (path.parent / "figures" / "test_losses.png").read_bytes().startswith(PNG_MAGIC)


def test_empty_runs_dir_still_renders(tmp_path: Path) -> None:
    report = build_report(
        tmp_path / "runs",
        tmp_path / "data",
        tmp_path / "out",
        params=make_params(),
        provenance=PROVENANCE,
    )
    text = report.read_text()
    assert section(text, "Headline", "##").count("**Not run**") == len(DATASETS)
    assert (
        text.count("**Not run** in this profile") == len(DATASETS) + 5 + 4 + 2
    )  # + efficiency, diagnosis, encoding, transfer, convergence; + 3 studies, linear encoder;
    # + the variational and implicit GONs
    assert "**Benchmark not run**" in text
    assert "| MNIST | 64 | 0.59 | dataset not run in this profile |" in text
    assert "| (no runs) |" in text
    assert "{{" not in text and "{%" not in text
    assert pd.read_csv(tmp_path / "out" / "results.csv").empty  # header only


# --------------------------------------------------------------------------------------------
# Gradient Flow Encoding studies
# --------------------------------------------------------------------------------------------


def fake_final_bce(method: str, size: int, seed: int, base: dict | None = None) -> float:
    return (base or EFF_BASE)[(method, size)] + 0.004 * seed + (0.002 if seed == 2 else 0.0)


def fake_train_seconds(method: str, step: int, seed: int) -> float:
    return STEP_SECONDS[method] * step * (1.0 + 0.05 * seed)


def fake_efficiency_metrics(
    run: str, method: str, size: int, seed: int, **fields: Any
) -> EfficiencyMetrics:
    """A data-efficiency-schema record (runs/efficiency and runs/transfer) of the fake study."""
    return EfficiencyMetrics(
        run=run,
        dataset="mnist",
        method=method,
        train_size=size,
        seed=seed,
        architecture="mlp",
        nz=EFF_NZ,
        loss="bce",
        steps=EFF_STEPS,
        batch_size=16,
        eval_images=256,
        n_params=1000,
        profile="quick",
        **fields,
    )


def write_fake_efficiency(
    runs_dir: Path,
    *,
    seeds: tuple[int, ...] = SEEDS,
    base: dict | None = None,
    with_curves: bool = True,
) -> None:
    """runs/efficiency/mnist/<method>-n<size>-s<seed>/{curve.csv, metrics.json}."""
    for method in EFF_METHODS:
        for size in EFF_SIZES:
            for seed in seeds:
                name = f"{method}-n{size}-s{seed}"
                run_dir = runs_dir / "efficiency" / "mnist" / name
                run_dir.mkdir(parents=True)
                final = fake_final_bce(method, size, seed, base)
                rows = []
                for step in EFF_POINTS:
                    bce = final * (1.0 + 2.0 * (1.0 - step / EFF_STEPS))
                    rows.append(
                        {
                            "step": step,
                            "images_seen": step * 16,
                            "train_seconds": fake_train_seconds(method, step, seed),
                            "train_nfe": STEP_NFE[method] * step,
                            "test_bce": bce,
                            "test_sse_per_image": bce * SSE_PER_BCE,
                            "test_encode_seconds": 0.5 if method.startswith("gfe") else 0.01,
                            "test_encode_nfe": 120 if method.startswith("gfe") else 0,
                        }
                    )
                if with_curves:
                    pd.DataFrame(rows).to_csv(run_dir / "curve.csv", index=False)
                fake_efficiency_metrics(
                    f"efficiency/mnist/{name}",
                    method,
                    size,
                    seed,
                    final=rows[-1],
                    wall_seconds=rows[-1]["train_seconds"] + 5.0,
                    mlflow_run_id=f"eff-{name}",
                ).write(run_dir / "metrics.json")


def fake_conv_loss(flow: str, iteration: int, image: int) -> float:
    import math

    return 0.7 * math.exp(-iteration * (1.0 + 0.03 * image) / CONV_RATES[flow]) + 0.05


def write_fake_convergence(runs_dir: Path, *, with_curves: bool = True) -> None:
    """runs/convergence/mnist/{curves.csv, summary.json}, the summary computed from the curves."""
    out = runs_dir / "convergence" / "mnist"
    out.mkdir(parents=True)
    rows = [
        {
            "flow": flow,
            "iteration": it,
            "nfe": CONV_NFE_PER_IT[flow] * it,
            "seconds": 0.01 * CONV_NFE_PER_IT[flow] * it,
            "image": image,
            "loss": fake_conv_loss(flow, it, image),
        }
        for flow in CONV_RATES
        for it in range(CONV_LAST[flow] + 1)
        for image in range(CONV_IMAGES)
    ]
    curves = pd.DataFrame(rows)
    if with_curves:
        curves.to_csv(out / "curves.csv", index=False)
    flows = {}
    for flow, last in CONV_LAST.items():
        final = curves[(curves["flow"] == flow) & (curves["iteration"] == last)]
        flows[flow] = {
            "iterations": last,
            "nfe": int(final["nfe"].iloc[0]),
            "seconds": float(final["seconds"].iloc[0]),
            "final_mean_loss": float(final["loss"].mean()),
        }
    write_json(
        out / "summary.json",
        {
            "dataset": "mnist",
            "decoder": "runs/efficiency/mnist/gfe_adaptive-n1000-s0",
            "loss": "bce",
            "method": "gfe_adaptive",
            "train_size": 1000,
            "seed": 0,
            "images": CONV_IMAGES,
            "iterations": CONV_ITERATIONS,
            "step_size": 1.0,
            "flows": flows,
        },
    )


def write_fake_bench(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / "bench_gfe_gradients.json",
        {
            "benchmark": "gfe_decoder_gradients",
            "device": "cpu",
            "machine": "x86_64",
            "torch": "2.x",
            "settings": {"dataset": "mnist", "batch": 16, "nz": 32, "tau": 100.0},
            "results": [
                {
                    "mode": mode,
                    "seconds": v["seconds"],
                    "peak_rss_mib": v["peak_rss_mib"],
                    "rss_growth_mib": v["peak_rss_mib"] / 3,
                    "forward_nfe": 62,
                    "cosine_vs_backprop": v["cos"],
                    "relative_difference_vs_backprop": v["rel"],
                }
                for mode, v in BENCH.items()
            ],
        },
    )


def write_fake_transfer(runs_dir: Path) -> None:
    """runs/transfer/mnist/<method>-s<seed>/metrics.json: unseen digits 20% above seen ones."""
    for method in EFF_METHODS:
        for seed in SEEDS:
            seen = fake_final_bce(method, EFF_SIZES[-1], seed, None) * SSE_PER_BCE
            final = {"step": EFF_STEPS, "test_sse_per_image": 1.2 * seen + 0.1 * seed}
            fake_efficiency_metrics(
                f"transfer/mnist/{method}-s{seed}",
                method,
                EFF_SIZES[-1],
                seed,
                final=final | {"seen_test_sse_per_image": seen},
                wall_seconds=1.0,
                mlflow_run_id=None,
            ).write(runs_dir / "transfer" / "mnist" / f"{method}-s{seed}" / "metrics.json")


def build_gfe(
    root: Path,
    *,
    gon_runs: bool = False,
    base: dict | None = None,
    conv_curves: bool = True,
    bench: bool = True,
) -> tuple[Path, str]:
    """A report with all three GFE inputs; GON runs only when asked (they cost figure time)."""
    if gon_runs:
        runs_dir, data_dir = write_fake_runs(root)
    else:
        runs_dir, data_dir = root / "runs", root / "data"
    write_fake_efficiency(runs_dir, base=base)
    write_fake_convergence(runs_dir, with_curves=conv_curves)
    diagnosis_record(as_run_gap=0.1).write(runs_dir / "diagnosis" / "mnist" / "gon_mlp.json")
    encoding_record().write(runs_dir / "encoding" / "mnist" / "summary.json")
    write_fake_transfer(runs_dir)
    if bench:
        write_fake_bench(root / "reports")
    report = build_report(
        runs_dir, data_dir, root / "reports", params=make_params(), provenance=PROVENANCE
    )
    return report, report.read_text()


@pytest.fixture(scope="module")
def gfe_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return build_gfe(tmp_path_factory.mktemp("gfe"), gon_runs=True)


def duration(seconds: float) -> str:
    """The GFE tables' time format: 3 significant figures below 10 s."""
    return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:,.1f} s"


def fmt_ci(values: list[float]) -> str:
    ci = mean_ci(values)
    return f"{ci.mean:.4g} [{ci.low:.4g}, {ci.high:.4g}]"


def test_gfe_sections_present_and_gon_runs_unaffected(gfe_report: tuple[Path, str]) -> None:
    _, text = gfe_report
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    first = headings.index(GFE_HEADINGS[0])
    assert headings[first : first + 3] == GFE_HEADINGS
    assert "{{" not in text and "{%" not in text
    # runs/efficiency and runs/convergence are studies, not datasets or incomplete GON runs
    assert "incomplete run" not in text
    assert "Runs found: 12" in text
    for heading in GFE_HEADINGS:
        assert "**Not run**" not in section(text, heading[3:], "##")
    diagnosis = section(text, "Why GON stays at the mean image here: a diagnosis", "###")
    assert "**As run, the latent is inert.**" in diagnosis
    encoding = section(text, "How good and how costly is each encoding?", "###")
    assert "**Not run**" not in encoding and "| GFE (adaptive step) | 3 |" in encoding
    transfer = section(text, "Generalisation to unseen classes", "###")
    assert "| GFE (adaptive step) | 3 |" in transfer and "− AE on unseen digits:**" in transfer


def test_efficiency_table_is_mean_ci_of_the_runs(gfe_report: tuple[Path, str]) -> None:
    _, text = gfe_report
    eff = section(text, "Gradient Flow Encoding: data efficiency", "##")
    assert "MNIST, MLP decoder, nz 20; 60 optimiser steps × batch 16 (960 training" in eff
    assert "learning rate 0.0005" in eff and "BCE, mean over pixels" in eff
    labels = {"gfe_adaptive": "GFE (adaptive step)", "gon": "GON", "ae": "AE"}
    for size in EFF_SIZES:
        for method in EFF_METHODS:
            bce = [fake_final_bce(method, size, s) for s in SEEDS]
            sse = [v * SSE_PER_BCE for v in bce]
            seconds = sum(fake_train_seconds(method, EFF_STEPS, s) for s in SEEDS) / len(SEEDS)
            nfe = STEP_NFE[method] * EFF_STEPS
            row = (
                f"| {size:,} | {labels[method]} | 3 | {fmt_ci(bce)} | {fmt_ci(sse)} | "
                f"{duration(seconds)} | {nfe:,} |"
            )
            assert row in eff, row


def test_efficiency_sentences_follow_the_numbers(
    gfe_report: tuple[Path, str], tmp_path: Path
) -> None:
    _, text = gfe_report
    eff = section(text, "Gradient Flow Encoding: data efficiency", "##")
    at_100 = next(line for line in eff.splitlines() if line.startswith("- **100 training"))
    assert "**GFE (adaptive step) had the lowest mean final test loss**" in at_100
    assert "for the runner-up, GON" in at_100 and "do not overlap" in at_100
    ratio = sum(fake_train_seconds("gfe_adaptive", EFF_STEPS, s) for s in SEEDS) / sum(
        fake_train_seconds("ae", EFF_STEPS, s) for s in SEEDS
    )
    assert f"GFE (adaptive step) used **{ratio:.3g}× the training time of the AE**" in at_100
    assert "its mean final test loss was lower than the AE's" in at_100
    at_1000 = next(line for line in eff.splitlines() if line.startswith("- **1,000 training"))
    assert "for the runner-up, AE" in at_1000 and "intervals overlap" in at_1000  # 0.150 vs 0.152
    # Swap GFE and AE: the sentence must follow.
    swapped = {
        (m, n): EFF_BASE[({"gfe_adaptive": "ae", "ae": "gfe_adaptive"}.get(m, m), n)]
        for m, n in EFF_BASE
    }
    _, text2 = build_gfe(tmp_path, base=swapped, bench=False)
    eff2 = section(text2, "Gradient Flow Encoding: data efficiency", "##")
    at_100 = next(line for line in eff2.splitlines() if line.startswith("- **100 training"))
    assert "**AE had the lowest mean final test loss**" in at_100
    assert "GFE (adaptive step) had the lowest" not in at_100
    assert "its mean final test loss was higher than the AE's" in at_100


def test_efficiency_rows_in_results_csv(gfe_report: tuple[Path, str]) -> None:
    path, _ = gfe_report
    results = pd.read_csv(path.parent / "results.csv")
    assert list(results.columns[:3]) == ["dataset", "method", "nz"]
    assert list(results.columns[-7:]) == [
        "train_size",
        "loss",
        "loss_mean",
        "loss_ci_low",
        "loss_ci_high",
        "train_seconds_mean",
        "train_nfe_mean",
    ]
    gon = results[results["bn_mode"] != "none"]
    assert len(gon) == len(DATASETS) * len(METHODS) * 2 * 2 and gon["train_size"].isna().all()
    eff = results[results["bn_mode"] == "none"]
    assert len(eff) == len(EFF_METHODS) * len(EFF_SIZES)
    assert set(eff["split"]) == {"test"} and set(eff["nz"]) == {EFF_NZ}
    for _, row in eff.iterrows():
        bce = [fake_final_bce(row["method"], int(row["train_size"]), s) for s in SEEDS]
        ci = mean_ci(bce)
        assert row["loss"] == "bce"
        assert row["loss_mean"] == pytest.approx(ci.mean)
        assert row["loss_ci_low"] == pytest.approx(ci.low)
        assert row["loss_ci_high"] == pytest.approx(ci.high)
        assert row["mean"] == pytest.approx(ci.mean * SSE_PER_BCE)
        assert row["unit"] == "sse_per_image"


def test_convergence_table_and_sentences(gfe_report: tuple[Path, str]) -> None:
    from repro.stats import paired_difference

    _, text = gfe_report
    conv = section(text, "Gradient Flow Encoding: convergence per iteration", "##")
    final = {
        f: sum(fake_conv_loss(f, CONV_LAST[f], i) for i in range(CONV_IMAGES)) / CONV_IMAGES
        for f in CONV_RATES
    }
    assert f"| 2nd-order flow | 50 | 50 | 0.5 s | {final['second_order']:.4g} |" in conv
    assert f"| adaptive step | 30 | 90 | 0.9 s | {final['adaptive_step']:.4g} |" in conv
    assert "`gfe-second-order-faster`" in conv and "`gfe-adaptive-step-stiffness`" in conv
    assert "the 2nd-order flow's mean loss was **lower than** the 1st-order flow's" in conv
    diff = paired_difference(
        [fake_conv_loss("second_order", 50, i) for i in range(CONV_IMAGES)],
        [fake_conv_loss("first_order", 50, i) for i in range(CONV_IMAGES)],
    )
    assert f"difference {diff.mean:.3g}" in conv
    # budget = 50 evaluations: adaptive iteration 16 (48 evaluations) vs first-order iteration 50
    assert "Within 50 gradient evaluations" in conv
    assert "iteration 16, 48 evaluations" in conv and "**lower**" in conv
    assert "(figures/convergence.png)" in conv


def test_gradient_benchmark_table_and_sentence(gfe_report: tuple[Path, str]) -> None:
    _, text = gfe_report
    grad = section(text, "Gradient Flow Encoding: decoder gradients", "##")
    assert "| approximate | 3 s | 350 |" in grad
    assert "| adjoint | 30.0 s | 400 |" in grad
    assert "`tau` = 100.0" in grad
    assert "cosine similarity **0.93** with the exact one" in grad
    assert "takes 4× less time than backprop, 10× less than the adjoint" in grad
    assert "(the adjoint's cosine with backprop: 0.9999)" in grad


def test_gfe_claims_in_the_claims_table_with_their_source(gfe_report: tuple[Path, str]) -> None:
    _, text = gfe_report
    claims = section(text, "Claims and verdicts", "##")
    for cid in (
        "gfe-data-efficiency",
        "gfe-adjoint-not-necessary",
        "gfe-second-order-faster",
        "gfe-adaptive-step-stiffness",
    ):
        assert f"| `{cid}` | GFE paper |" in claims
    assert re.search(r"\*\*GFE paper\*\*: [^\n]*2105\.05031[^\n]*2412\.00864", claims)
    assert "k-flouris/gfe" in claims


def test_gfe_figures_are_png(gfe_report: tuple[Path, str]) -> None:
    path, text = gfe_report
    for name in ("efficiency_final.png", "efficiency_curves.png", "convergence.png"):
        data = (path.parent / "figures" / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        assert f"(figures/{name})" in text


def test_no_gfe_inputs_say_not_run(quick_report: tuple[Path, str]) -> None:
    path, text = quick_report
    eff = section(text, "Gradient Flow Encoding: data efficiency", "##")
    conv = section(text, "Gradient Flow Encoding: convergence per iteration", "##")
    grad = section(text, "Gradient Flow Encoding: decoder gradients", "##")
    assert "**Not run** in this profile" in eff and "**Not run** in this profile" in conv
    assert "Benchmark not run** (`python bench/gfe_gradients.py`" in grad
    assert "`gfe-data-efficiency`" in eff  # the claim is still named
    for name in ("efficiency_final.png", "efficiency_curves.png", "convergence.png"):
        assert not (path.parent / "figures" / name).exists()
    assert pd.read_csv(path.parent / "results.csv")["train_size"].isna().all()


def test_convergence_summary_without_curves(tmp_path: Path) -> None:
    path, text = build_gfe(tmp_path, conv_curves=False, bench=False)
    conv = section(text, "Gradient Flow Encoding: convergence per iteration", "##")
    assert "| 1st-order flow | 50 | 50 | 0.5 s |" in conv
    assert "curves.csv is absent" in conv
    assert "convergence.png" not in conv
    assert not (path.parent / "figures" / "convergence.png").exists()
    # equal iteration counts: still comparable from the summary; adaptive ahead on both counts?
    assert "the 2nd-order flow's mean loss was **lower than**" in conv
    assert "(from summary.json" in conv
    assert "Runs found: 0" in text


def test_partial_gfe_inputs_single_seed_sse_loss(tmp_path: Path) -> None:
    """One seed, SSE as the study loss, a run and a curve missing, no adjoint, no curves.csv."""
    import json

    runs_dir = tmp_path / "runs"
    write_fake_efficiency(runs_dir, seeds=(0,))
    for run_dir in (runs_dir / "efficiency" / "mnist").iterdir():
        curve = pd.read_csv(run_dir / "curve.csv").drop(columns="test_bce")
        curve["test_sse"] = curve["test_sse_per_image"]
        curve.to_csv(run_dir / "curve.csv", index=False)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics.update(loss="sse", final=curve.iloc[-1].to_dict())
        write_json(run_dir / "metrics.json", metrics)
    for path in (runs_dir / "efficiency" / "mnist" / "ae-n100-s0").iterdir():
        path.unlink()  # killed before it wrote anything: an empty run directory
    (runs_dir / "efficiency" / "mnist" / "gon-n1000-s0" / "curve.csv").unlink()
    write_fake_convergence(runs_dir, with_curves=False)
    write_fake_bench(tmp_path / "reports")
    bench = json.loads((tmp_path / "reports" / "bench_gfe_gradients.json").read_text())
    bench["results"] = [r for r in bench["results"] if r["mode"] != "adjoint"]
    write_json(tmp_path / "reports" / "bench_gfe_gradients.json", bench)
    params = params_dict(seeds=(0,))
    params["efficiency"]["loss"] = "sse"
    report = build_report(
        runs_dir,
        tmp_path / "data",
        tmp_path / "reports",
        params=params_from_dict(params),
        provenance=PROVENANCE,
    )
    text = report.read_text()
    eff = section(text, "Gradient Flow Encoding: data efficiency", "##")
    assert "final test loss, SSE per image |" in eff and "BCE" not in eff
    gfe_sse = fake_final_bce("gfe_adaptive", 100, 0) * SSE_PER_BCE
    assert f"| 100 | GFE (adaptive step) | 1 | {gfe_sse:.4g} [no CI: n = 1] |" in eff
    assert "| 100 | AE |" not in eff
    assert "not found (1): ae-n100-s0" in eff
    assert "with a single seed the confidence intervals are undefined" in eff
    assert "`efficiency/mnist/ae-n100-s0` has no metrics.json" in text
    assert "`efficiency/mnist/gon-n1000-s0` has no curve.csv" in text
    grad = section(text, "Gradient Flow Encoding: decoder gradients", "##")
    assert "takes 4× less time than backprop." in grad and "| adjoint |" not in grad
    for name in ("efficiency_final.png", "efficiency_curves.png"):
        assert (report.parent / "figures" / name).read_bytes().startswith(PNG_MAGIC)
    results = pd.read_csv(report.parent / "results.csv")
    assert len(results) == len(EFF_METHODS) * len(EFF_SIZES) - 1
    assert set(results["loss"]) == {"sse"} and results["ci_low"].isna().all()


def test_unreadable_benchmark_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "bench_gfe_gradients.json").write_text("{not json")
    report = build_report(
        tmp_path / "runs",
        tmp_path / "data",
        tmp_path / "reports",
        params=make_params(),
        provenance=PROVENANCE,
    )
    text = report.read_text()
    assert "bench_gfe_gradients.json could not be read" in text
    assert "**Benchmark not run**" in text


def test_protocol_differences_name_the_gfe_deviations_from_params():

    params = {
        "profile": "quick",
        "data": {"image_size": 32},
        "model": {"nz": [32], "activation": "elu"},
        "train": {"epochs": 2, "train_images": 32000, "seeds": [0], "batch_size": 64, "lr": 1e-4},
        "gfe": {"tau": 1000.0},
        "efficiency": {"architecture": "mlp", "steps": 150, "batch_size": 16, "eval_images": 256},
    }
    text = " ".join(protocol_differences(params_from_dict(params)))
    assert "1,024 outputs" in text and "150 steps of batch 16 (2,400 images seen)" in text
    assert "τ = 1000 here vs 1e4" in text and "256 held-out test images" in text
    params["gfe"]["tau"] = 1e4
    assert "GFE flow horizon" not in " ".join(protocol_differences(params_from_dict(params)))


def test_every_claim_is_in_the_claims_table_with_source_and_verdict(
    gfe_report: tuple[Path, str],
) -> None:
    from repro.report.claims.registry import load_registry

    _, text = gfe_report
    claims = section(text, "Claims and verdicts", "##")
    registry = load_registry()
    for c in registry["claims"]:
        short = registry["sources"][c["source"]]["short"]
        assert re.search(rf"^\| `{re.escape(c['id'])}` \| {re.escape(short)} \|", claims, re.M), c[
            "id"
        ]
    verdicts = re.findall(
        r"\| \*\*(reproduced|not reproduced|inconclusive|not tested)\*\* \|$", claims, re.M
    )
    assert len(verdicts) >= len(registry["claims"])


def test_executive_summary_counts_add_up_to_the_claims(gfe_report: tuple[Path, str]) -> None:
    from repro.report.claims.registry import load_registry

    _, text = gfe_report
    summary = section(text, "Executive summary", "##")
    counts = re.findall(
        r"\*\*(\d+) (?:reproduced|not reproduced|inconclusive|not tested)\*\*", summary
    )
    assert sum(map(int, counts)) == len(load_registry()["claims"])
    assert re.search(r"^1\. \*\*", summary, re.M)  # at least one key finding, numbered


def test_html_twin_is_self_contained_with_every_figure(gfe_report: tuple[Path, str]) -> None:
    from repro.report.html import external_references

    path, text = gfe_report
    html = (path.parent / "report.html").read_text()
    assert external_references(html) == []
    assert html.count('src="data:image/png;base64,') == text.count("![")
    assert "<script" not in html and "Claims and verdicts" in html


def test_limitations_follow_the_params(gfe_report: tuple[Path, str]) -> None:
    _, text = gfe_report
    lim = section(text, "Limitations", "##")
    assert "Scale: the `quick` profile" in lim
    assert "SmallNORB" in lim and "BatchNorm mode" in lim


def test_display_order_puts_the_listed_values_first_and_the_rest_by_their_text():
    from repro.report.formatting import ordered

    assert ordered(["ae", "vae", "gon", "ae"], ["gon", "ae", "gon", "gfe"]) == ["gon", "ae", "vae"]
    assert ordered(["elu", None, "relu"], ["relu"]) == ["relu", None, "elu"]
