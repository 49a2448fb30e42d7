"""The ablation studies: what a cell trains, k-step GON with a learned step, the affine-encoder
control, curves and cost, the files a study writes with or without its stage, and the decision
rules the report applies to them."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from repro.config import ConfigError
from repro.encoders import build_model
from repro.engine import run_group
from repro.evaluate import affinity_error
from repro.models import count_parameters
from repro.report.studies.activation import outcome_sentence
from repro.report.verdicts import BEST, NOT_BEST, NOT_DISTINGUISHABLE, compare_with_reference
from repro.result_files import is_provenance_file, read_results_json, read_rows
from repro.stats import holm_adjust, time_to_threshold
from repro.studies import (
    cell_variants,
    score_variant,
    study_jobs,
    study_result,
    study_seeds,
    variant_params,
    write_study_results,
)
from repro.train import fit
from tests.conftest import blob_images, stage_env, study_copy


def test_each_study_cell_trains_every_method_of_the_study_on_its_own_setting(tiny_params):
    name, variants = cell_variants(tiny_params, "activation", activation="relu")
    assert name == "synthetic-relu"
    assert [(v.method, v.activation) for v in variants] == [("gon", "relu"), ("ae", "relu")]
    name, variants = cell_variants(tiny_params, "multistep", steps=2)
    assert name == "synthetic-k2" and [(v.method, v.steps) for v in variants] == [("gon", 2)]
    name, variants = cell_variants(tiny_params, "latent", dataset="synthetic", nz=4)
    assert name == "synthetic-nz4" and {v.nz for v in variants} == {4}
    assert study_seeds(tiny_params, "latent") == [0] and study_seeds(tiny_params, "activation") == [
        0,
        1,
    ]


def test_a_cell_params_yaml_does_not_list_is_refused_naming_the_key(tiny_params):
    with pytest.raises(ConfigError, match="studies.activation.activations"):
        cell_variants(tiny_params, "activation", activation="tanh")
    with pytest.raises(ConfigError, match="allowed: \\['activation', 'multistep', 'latent'\\]"):
        cell_variants(tiny_params, "depth")


def test_variant_params_apply_the_study_scale_and_the_variant_and_keep_the_rest(tiny_params):
    _, (variant,) = cell_variants(tiny_params, "multistep", steps=2)
    p = variant_params(tiny_params, variant)
    assert (p.train.epochs, p.train.train_images, p.train.gon_steps) == (1, 64, 2)
    assert p.train.curve_points == 4 and p.train.curve_images == 16 and p.train.val_images == 16
    assert p.train.lr == tiny_params.studies.lr != tiny_params.train.lr  # the study's own lr
    assert (p.train.betas, p.train.batch_size) == (
        tiny_params.train.betas,
        tiny_params.train.batch_size,
    )
    default_lr = dataclasses.replace(tiny_params.studies, lr=None)
    p = variant_params(dataclasses.replace(tiny_params, studies=default_lr), variant)
    assert p.train.lr == tiny_params.train.lr  # lr: null falls back to train.lr


def test_a_learned_step_size_is_one_trained_scalar(tiny_params, tiny_data_dir, tmp_path):
    study = dataclasses.replace(
        tiny_params.studies,
        multistep=dataclasses.replace(tiny_params.studies.multistep, learn_step_size=True),
    )
    params = dataclasses.replace(tiny_params, studies=study)
    _, (variant,) = cell_variants(params, "multistep", steps=2)
    vparams = variant_params(params, variant)
    run_dir = tmp_path / "run"
    summary = fit(variant.spec(0), vparams, data_dir=tiny_data_dir, run_dir=run_dir)
    splits = {"test": torch.load(tiny_data_dir / "test.pt")["images"][:32]}
    model, record = score_variant(
        variant, 0, vparams, run_dir=run_dir, splits=splits, summary=summary
    )
    fixed = build_model("gon", nz=variant.nz, ngf=4, steps=2)
    assert count_parameters(model) == count_parameters(fixed) + 1
    assert record["learned_step_size"] is not None and record["learned_step_size"] != 1.0
    assert set(record["losses"]["test"]) == {"running", "batch"}


def test_curve_starts_untrained_and_records_every_curve_step(tiny_params, tiny_data_dir, tmp_path):
    _, (variant,) = cell_variants(tiny_params, "multistep", steps=1)
    vparams = variant_params(tiny_params, variant)  # 64 images, batch 32: 2 steps, curve every 1
    fit(variant.spec(0), vparams, data_dir=tiny_data_dir, run_dir=tmp_path / "run")
    rows = read_rows(tmp_path / "run" / "curve.csv")  # the seconds from its provenance sibling
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert [int(r["images_seen"]) for r in rows] == [0, 32, 64]
    assert float(rows[0]["train_seconds"]) == 0.0 < float(rows[-1]["train_seconds"])


def test_more_gradient_steps_keep_more_of_the_graph_for_the_backward_pass(
    tiny_params, tiny_data_dir, tmp_path
):
    saved = {}
    for k in (1, 2):
        _, (variant,) = cell_variants(tiny_params, "multistep", steps=k)
        summary = fit(
            variant.spec(0),
            variant_params(tiny_params, variant),
            data_dir=tiny_data_dir,
            run_dir=tmp_path / f"k{k}",
        )
        saved[k] = summary["graph_bytes_per_step"]
    assert 0 < saved[1] < saved[2]


@pytest.mark.stage
def test_a_study_run_without_its_stage_writes_the_files_the_stage_writes(
    tiny_params, tiny_data_dir, tmp_path
):
    # multistep: two cells × two seeds; run_group trains k = 2 (the costlier) first.
    train = dataclasses.replace(tiny_params.train, workers=1, device="cpu")
    params = dataclasses.replace(tiny_params, train=train)
    stage_root = tmp_path / "stage"
    study_copy(stage_root, yaml.safe_dump(params.to_dict(), sort_keys=False))
    shutil.copytree(tiny_data_dir, stage_root / "data" / "synthetic")
    proc = subprocess.run(
        [sys.executable, "pipelines/study.py", "--study", "multistep"],
        cwd=stage_root,
        env=stage_env(),  # tracking off: mlflow_run_id is null in both
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]

    plan = study_jobs(params, "multistep", tmp_path)  # tmp_path/data/synthetic: tiny_data_dir
    assert [job.name for job in plan.jobs] == [
        f"multistep/synthetic-k{k}/gon-elu-nz32-k{k}-s{seed}" for k in (1, 2) for seed in (0, 1)
    ]
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:  # the runs set this process's torch threads and determinism, as the stage's
        results = [study_result(outcome) for outcome in run_group(plan.jobs, workers=1)]
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    # Given in reverse finishing order: the files keep params order all the same.
    written = write_study_results(tmp_path, params, plan, results[::-1], device="cpu")

    # the results files (their provenance siblings, seconds and run ids, are not compared)
    stage_files = sorted(p for p in (stage_root / "runs").rglob("*.*") if not is_provenance_file(p))
    assert sorted(p.relative_to(tmp_path) for p in written) == [
        p.relative_to(stage_root) for p in stage_files
    ]
    assert len(stage_files) == 4  # metrics.json and curves.csv of synthetic-k1 and -k2
    for path in stage_files:
        ours = tmp_path / path.relative_to(stage_root)
        # byte for byte: the wall-clock values live in the provenance siblings
        assert ours.read_bytes() == path.read_bytes(), path.relative_to(stage_root)
    k1 = read_results_json(stage_root / "runs/studies/multistep/synthetic-k1/metrics.json")
    assert [(r["seed"], r["status"], r["mlflow_run_id"]) for r in k1["runs"]] == [
        (0, "ok", None),
        (1, "ok", None),
    ]


@pytest.mark.parametrize(("method", "affine"), [("gon", True), ("ae_linear", True), ("ae", False)])
def test_affinity_error_is_rounding_for_affine_encoders_and_large_for_the_conv_encoder(
    method, affine
):
    # Protocol §5: a one-step GON's latent is an affine function of the image. Batches are
    # combined with weights summing to 1 (not convex); the check runs in float64.
    torch.manual_seed(0)
    model = build_model(method, nz=6, ngf=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics for the running mode
        model.train()
        model(torch.rand(16, 1, 32, 32))
    errors = affinity_error(model, blob_images(48), combinations=3, batch_size=16)
    assert set(errors) == {"running", "batch"}
    for err in errors.values():
        assert (err < 1e-9) if affine else (err > 1e-3), (method, errors)


def test_linear_encoder_autoencoder_adds_one_affine_layer_to_the_gon_decoder():
    gon = build_model("gon", nz=32)
    linear = build_model("ae_linear", nz=32)
    assert count_parameters(gon) == 74_321
    assert count_parameters(linear) == 74_321 + 32 * 32 * 32 + 32


def test_holm_adjustment_textbook():
    # p = (0.01, 0.04, 0.03) sorted: 0.01*3, 0.03*2, 0.04*1 -> 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm_adjust([0.5, math.nan])
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1])


def _values(offsets, noise=(0.0, 0.1, -0.1, 0.05, -0.05)):
    return {name: {s: 10.0 + off + n for s, n in enumerate(noise)} for name, off in offsets.items()}


def test_reference_is_best_only_when_significantly_lower_than_every_other_variant():
    clear = _values({"elu": 0.0, "relu": 2.0, "tanh": 3.0})
    # add a seed-specific jitter so the paired differences have a variance
    clear["relu"][1] += 0.2
    clear["tanh"][2] += 0.3
    assert compare_with_reference(clear, "elu").outcome == BEST
    beaten = _values({"elu": 2.0, "relu": 0.0, "tanh": 3.0})
    beaten["relu"][0] += 0.1
    beaten["tanh"][3] -= 0.2
    result = compare_with_reference(beaten, "elu")
    assert result.outcome == NOT_BEST and result.lowest == "relu"
    assert outcome_sentence(result, "test loss") == (
        "Outcome: **elu not best**. relu has the lowest mean test loss, not elu; elu is "
        "significantly lower than tanh and significantly higher than relu (paired t-tests over "
        "5 matched seeds, Holm-corrected, α = 0.05)."
    )
    noisy = {
        "elu": {0: 10.0, 1: 12.0, 2: 9.0},
        "relu": {0: 11.0, 1: 10.0, 2: 10.0},
    }
    assert compare_with_reference(noisy, "elu").outcome == NOT_DISTINGUISHABLE


def test_time_to_threshold_interpolates_and_censors():
    steps, loss = [0, 100, 200, 300], [1.0, 0.5, 0.3, 0.2]
    assert time_to_threshold(steps, loss, 0.4) == pytest.approx(150.0)
    assert time_to_threshold(steps, loss, 1.5) == 0.0
    assert math.isnan(time_to_threshold(steps, loss, 0.1))
