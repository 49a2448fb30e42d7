"""Generalisation to unseen classes (repro.transfer): the class split is exact and disjoint, and a
run trains only on seen classes and is scored on both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from repro.io import save_torch
from repro.report import formatting
from repro.report.loaders import EfficiencyRun, load_efficiency_runs
from repro.report.sections.transfer import transfer_section
from repro.result_files import read_results_json
from repro.transfer import SPLIT_LABEL, class_split, transfer_run
from tests.conftest import blob_images


def test_the_class_split_is_exact_and_disjoint():
    labels = torch.tensor([0, 5, 4, 9, 1, 7, 3, 2, 8, 6, 0, 5])
    images = torch.arange(12).view(12, 1, 1, 1)  # each image is its own index
    seen, unseen = class_split(images, labels, first=100)
    assert seen.flatten().tolist() == [0, 2, 4, 6, 7, 10]  # labels 0, 4, 1, 3, 2, 0
    assert unseen.flatten().tolist() == [1, 3, 5, 8, 9, 11]  # labels 5, 9, 7, 8, 6, 5
    assert set(labels[seen.flatten()].tolist()) <= set(range(SPLIT_LABEL))
    assert set(labels[unseen.flatten()].tolist()) <= set(range(SPLIT_LABEL, 10))
    seen3, unseen2 = class_split(images, labels, first=3)
    assert seen3.flatten().tolist() == [0, 2, 4] and unseen2.flatten().tolist() == [1, 3, 5]


def test_a_run_trains_on_seen_classes_and_scores_unseen_and_seen(tiny_params, tmp_path):
    data = tmp_path / "data" / "synthetic"
    for i, (split, n) in enumerate({"train": 80, "val": 20, "test": 40}.items()):
        labels = torch.arange(n) % 10
        save_torch(data / f"{split}.pt", {"images": blob_images(n, seed=i), "labels": labels})
    eff = dataclasses.replace(
        tiny_params.efficiency, dataset="synthetic", methods=["ae"], train_sizes=[16, 24]
    )
    params = dataclasses.replace(tiny_params, efficiency=eff)
    record = transfer_run("ae", 0, params, tmp_path)["metrics"]
    assert record["train_size"] == 24  # the first 24 training images of digits 0-4 (40 exist)
    assert record["eval_images"] == min(eff.eval_images, 20)  # 20 test images are digits 5-9
    final = record["final"]
    assert final["step"] == eff.steps
    assert {"test_sse_per_image", "seen_test_sse_per_image"} <= set(final)
    run_dir = tmp_path / "runs" / "transfer" / "synthetic" / "ae-s0"
    on_disk = read_results_json(run_dir / "metrics.json")
    assert on_disk == record
    (run,), warnings = load_efficiency_runs(tmp_path / "runs" / "transfer")
    assert not warnings and run.final("seen_test_sse_per_image") == final["seen_test_sse_per_image"]


def fake_run(method: str, seed: int, unseen: float, seen: float) -> EfficiencyRun:
    final = {"step": 150, "test_sse_per_image": unseen, "seen_test_sse_per_image": seen}
    metrics = {"final": final, "eval_images": 256, "steps": 150}
    return EfficiencyRun("mnist", method, 1000, seed, Path("."), metrics, None)


def test_each_method_is_compared_with_the_ae_on_unseen_digits_paired_over_seeds():
    runs = [
        fake_run(m, s, unseen=base + d, seen=base - 10 + d)
        for m, base in (("gfe_adaptive", 30.0), ("gon", 56.0), ("ae", 50.0))
        for s, d in enumerate((0.0, 0.5, -0.3))
    ]
    runs[-1] = fake_run("ae", 2, unseen=50.4, seen=40.0)  # so GON − AE is not constant
    section = transfer_section(runs, ["gfe_adaptive", "gon", "ae"], confidence=0.95)
    assert [r.label for r in section.rows] == ["GFE (adaptive step)", "GON", "AE"]
    assert section.rows[0].penalty.mean == 10.0
    gfe, gon = section.versus_ae
    assert (gfe.label, gfe.verdict) == ("GFE (adaptive step)", "lower")
    assert (gon.label, gon.verdict) == ("GON", "higher")
    text = (
        formatting._environment().get_template("transfer.md.j2").render(transfer=section, cl="95%")
    )
    assert "GFE (adaptive step)'s loss is **lower** than the AE's." in text
    assert transfer_section([], ["ae"], confidence=0.95).status == "not run"
