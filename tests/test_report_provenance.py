"""The provenance section (repro.report.sections.provenance) and the data manifests it reads
(repro.report.loaders.load_manifest) as typed records, with exact expected values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from repro.report.loaders import (
    ConvergenceStudy,
    DataManifest,
    EfficiencyRun,
    GradientBenchmark,
    Run,
    load_manifest,
)
from repro.report.sections.provenance import (
    ComputePart,
    EfficiencyRunRecord,
    ManifestRow,
    RunRecord,
    compute_seconds,
    consistency_warnings,
    provenance_section,
)
from repro.report.study_runs import StudyRun

# The layout repro.data.prepare_dataset writes (abridged), with a list to show list indices.
MANIFEST = {
    "content_sha256": {
        "test": {"expected_labels_sha256": "e1", "labels_sha256": "l1"},
    },
    "files": {
        "test": {"path": "data/mnist/test.pt", "sha256": "f1", "images_resized_sha256": "r1"}
    },
    "raw_files": {"a.gz": {"sha256_actual": "a1", "sha256_expected": "a1"}},
    "resize_method": "bilinear",
    # "resize" holding an object is walked into (its "kind" is no resize entry), not listed
    "sources_tried": [{"resize_mode": "nearest", "resize": {"kind": "box"}}, "mirror"],
    "source": "registry",
    "verified": True,
}


def test_manifest_hashes_and_resize_entries_at_any_depth() -> None:
    assert DataManifest.from_json(MANIFEST) == DataManifest(
        source="registry",
        verified=True,
        hashes=(
            ("content_sha256.test.labels_sha256", "l1"),
            ("files.test.sha256", "f1"),
            ("files.test.images_resized_sha256", "r1"),
            ("raw_files.a.gz.sha256_actual", "a1"),
        ),
        resize=(("resize_method", "bilinear"), ("sources_tried[0].resize_mode", "nearest")),
    )


def test_manifest_without_source_or_verified_flag() -> None:
    assert DataManifest.from_json({"source": 3}) == DataManifest("3", False, (), ())
    assert DataManifest.from_json({}) == DataManifest(None, False, (), ())


def test_load_manifest_absent_read_or_refused_by_path(tmp_path: Path) -> None:
    assert load_manifest(tmp_path, "mnist") is None
    (tmp_path / "mnist.manifest.json").write_text(json.dumps(MANIFEST))
    assert load_manifest(tmp_path, "mnist") == DataManifest.from_json(MANIFEST)
    path = tmp_path / "fashion_mnist.manifest.json"
    path.write_text(json.dumps(["not", "a", "manifest"]))
    with pytest.raises(ValueError, match=rf"^{path}: not a data manifest"):
        load_manifest(tmp_path, "fashion_mnist")
    path.write_text("{broken")
    with pytest.raises(ValueError, match=rf"^{path}: not valid JSON"):
        load_manifest(tmp_path, "fashion_mnist")


def main_run(name: str, **metrics: Any) -> Run:
    return Run("mnist", "gon", 32, 0, Path(name), {"run": name, **metrics}, None)


def eff_run(name: str, curve: pd.DataFrame | None = None, **metrics: Any) -> EfficiencyRun:
    return EfficiencyRun("mnist", "gon", 100, 0, Path(name), {"run": name, **metrics}, curve)


RUNS = [
    main_run("b", train_seconds=100.0, eval_seconds=10.0, device="cpu", mlflow_run_id="id-b"),
    main_run("a", train_seconds=50.0, eval_seconds=None, device=None, mlflow_run_id=None),
]
EFF_RUNS = [
    eff_run("e1", final={"train_seconds": 4.0}, wall_seconds=6.0, mlflow_run_id="id-e1"),
    eff_run("e2", curve=pd.DataFrame({"train_seconds": [1.0, 2.5]})),
]


def test_compute_seconds_per_part_leaves_out_parts_without_compute() -> None:
    study = [StudyRun("activation", "elu", {"train_seconds": 7.0}), StudyRun("s", "c", {})]
    convergence = [
        ConvergenceStudy("mnist", {"flows": {"a": {"seconds": 0.5}, "b": {}}}, None),
        ConvergenceStudy("fashion_mnist", {}, None),
    ]
    bench = GradientBenchmark.from_json({"results": [{"mode": "x", "seconds": 2}, {"seconds": 1}]})
    assert compute_seconds(RUNS, EFF_RUNS, study, convergence, bench) == (
        ComputePart("main GON/AE/linear-AE runs (training + evaluation)", 160.0),
        ComputePart("ablation studies: activation, multi-step, latent size (training)", 7.0),
        ComputePart("GFE data-efficiency runs", 6.0),
        ComputePart("GFE convergence study (solvers)", 0.5),
        ComputePart("GFE decoder-gradient benchmark", 3.0),  # rows without a mode count too
    )
    assert compute_seconds([], [], [], [], None) == ()


def test_provenance_section_records_every_run_and_manifest() -> None:
    manifest = DataManifest.from_json(MANIFEST)
    compute = (ComputePart("x", 1.5), ComputePart("y", 2.0))
    section = provenance_section(
        RUNS,
        EFF_RUNS,
        {"mnist": manifest, "fashion_mnist": None},
        {"git_commit": "abc", "git_dirty": False},
        compute=compute,
    )
    assert section.compute == compute and section.compute_total == 3.5
    assert section.entries == (("git_commit", "abc"), ("git_dirty", False))
    assert section.manifests == (
        ManifestRow("MNIST", manifest),
        ManifestRow("Fashion-MNIST", None),
    )
    assert [m.present for m in section.manifests] == [True, False]
    assert (section.train_seconds, section.eval_seconds, section.total_seconds) == (
        150.0,
        10.0,
        160.0,
    )
    assert section.runs == (  # sorted by name
        RunRecord("a", None, 50.0, None, None),
        RunRecord("b", "cpu", 100.0, 10.0, "id-b"),
    )
    assert section.efficiency_runs == (  # in the given order; curve.csv's last row without final
        EfficiencyRunRecord("e1", 4.0, 6.0, "id-e1"),
        EfficiencyRunRecord("e2", 2.5, None, None),
    )


def test_provenance_section_of_nothing() -> None:
    section = provenance_section([], [], {}, {})
    assert section.compute == () and section.compute_total == 0
    assert (section.entries, section.manifests, section.runs, section.efficiency_runs) == (
        (),
        (),
        (),
        (),
    )
    assert section.total_seconds == 0.0


def test_consistency_warnings_name_runs_of_another_profile_or_headline_mode() -> None:
    runs = [
        main_run("ok", profile="quick", headline_bn="batch"),
        main_run("unknown"),  # neither recorded: no warning
        main_run("z-paper", profile="paper", headline_bn="running"),
        main_run("a-paper", profile="paper", headline_bn="batch"),
    ]
    assert consistency_warnings(runs, "quick", "batch") == [
        "runs from a profile other than `quick`: a-paper, z-paper",
        "runs whose metrics name a headline BN mode other than `batch`: z-paper",
    ]
    assert consistency_warnings(runs[:2], "quick", "batch") == []
