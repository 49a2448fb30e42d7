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

from repro.io import write_json
from repro.report import build_report, protocol_differences
from repro.report.render import load_claims
from repro.stats import mean_ci

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


def make_params(profile: str = "quick", seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
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
    }


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
    """runs/<dataset>/<method>-nz32-s<seed>/ with metrics, history and recon; reference; manifests."""
    runs_dir, data_dir = root / "runs", root / "data"
    for dataset in datasets:
        for method in METHODS:
            for seed in seeds:
                name = f"{method}-nz{NZ}-s{seed}"
                run_dir = runs_dir / dataset / name
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
                write_json(
                    run_dir / "metrics.json",
                    {
                        "run": f"{dataset}/{name}",
                        "dataset": dataset,
                        "method": method,
                        "nz": NZ,
                        "seed": seed,
                        "activation": "elu",
                        "n_params": 74321 if method == "gon" else 148673,
                        "epochs": epochs,
                        "train_images": 50000,
                        "train_seconds": 100.0 + seed,
                        "eval_seconds": 10.0,
                        "device": "cpu",
                        "profile": "quick",
                        "eval_batch_size": 64,
                        "headline_bn": "batch",
                        "losses": losses,
                        "batch_order_spread": {
                            "shuffles": 3,
                            "test_sse_per_image_std": 0.01,
                            "test_sse_per_image_max_abs_diff": 0.02,
                        },
                        "final_train_mse_per_pixel": batch_test / PIXELS,
                        "mlflow_run_id": mlflow_id(dataset, method, seed),
                    },
                )
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
        "## Headline",
        "## Both BatchNorm modes",
        "## Published numbers",
        "## Parameters",
        "## Figures",
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
    assert "not measured at this nz in this profile" in pub
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
    assert f"Compute: {total:,.1f} s" in prov


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
    changed = make_params()
    changed["train"].update(epochs=7, train_images=1000, lr=2e-4)
    diffs = protocol_differences(changed)
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
    assert text.count("**Not run**") == len(DATASETS)
    assert "| MNIST | 64 | 0.59 | dataset not run in this profile |" in text
    assert "| (no runs) |" in text
    assert "{{" not in text and "{%" not in text
    assert pd.read_csv(tmp_path / "out" / "results.csv").empty  # header only
