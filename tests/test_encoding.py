"""Encoding optimality and cost (repro.encoding) on tiny models: the amortisation gap is a loss
the flow removes (never a gain), and the stage's record covers every method and seed."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from repro.config import params_from_dict
from repro.efficiency import efficiency_model, efficiency_name, train_efficiency_run
from repro.encoding import encoding_study, probe_model
from repro.io import save_torch
from repro.records import EncodingMetrics, read_record
from repro.report import formatting
from repro.report.claims.evaluate import evaluate_claim
from repro.report.claims.evidence import Evidence
from repro.report.claims.registry import load_registry
from repro.report.sections.encoding import encoding_section
from repro.train_run import to_unit_float
from tests.conftest import blob_images
from tests.factories import encoding_record


def test_the_amortisation_gap_of_an_autoencoder_is_not_negative(tiny_params):
    cfg = tiny_params.efficiency
    model, _ = train_efficiency_run(
        "ae",
        cfg,
        tiny_params.gfe,
        train_uint8=blob_images(64),
        test_uint8=blob_images(16, seed=1),
        train_size=64,
        seed=0,
        name="t/ae",
    )
    x = to_unit_float(blob_images(16, seed=2))
    row = probe_model(model, "ae", x, tiny_params, "t/ae")
    assert row["gap_loss"] >= 0 and row["refined_loss"] <= row["own_loss"]
    assert row["gap_loss"] == row["own_loss"] - row["refined_loss"]
    assert row["encode_nfe"] == 0 and row["refine_nfe"] > 0  # the AE's latent is one pass
    assert "random_start_loss" not in row


def test_gfe_rows_add_the_random_start_and_count_their_gradient_evaluations(tiny_params):
    torch.manual_seed(0)
    x = to_unit_float(blob_images(8))
    model = efficiency_model("gfe_adaptive", tiny_params.efficiency, tiny_params.gfe, 1, 32, "t")
    row = probe_model(model, "gfe_adaptive", x, tiny_params, "t/gfe")
    assert row["encode_nfe"] > 1
    assert math.isfinite(row["random_start_loss"]) and math.isfinite(
        row["random_start_sse_per_image"]
    )


def test_the_stage_record_has_every_method_and_seed_and_reads_back(tiny_params, tiny_data_dir):
    eff = dataclasses.replace(
        tiny_params.efficiency, dataset="synthetic", train_sizes=[16, 32], seeds=[0, 1]
    )
    params = dataclasses.replace(tiny_params, efficiency=eff)
    root = tiny_data_dir.parents[1]
    images = blob_images(64)
    for method in eff.methods:
        for seed in eff.seeds:
            model, _ = train_efficiency_run(
                method,
                eff,
                params.gfe,
                train_uint8=images,
                test_uint8=images[:8],
                train_size=32,
                seed=seed,
                name="t",
            )
            path = root / "models" / efficiency_name("synthetic", method, 32, seed) / "model.pt"
            save_torch(path, {"state_dict": model.state_dict(), "method": method})
    record = encoding_study(params, root)
    assert [(r["method"], r["seed"]) for r in record.rows] == [
        (m, s) for m in eff.methods for s in eff.seeds
    ]
    assert record.train_size == 32 and record.eval_images == min(eff.eval_images, 64)
    record.write(root / "summary.json")
    assert read_record(EncodingMetrics, root / "summary.json") == record


def test_the_findings_are_decided_by_paired_comparisons_over_seeds():
    section = encoding_section(encoding_record(), confidence=0.95)
    gfe, ae = section.rows
    assert (gfe.method, ae.method) == ("gfe_adaptive", "ae")
    assert ae.gap_verdict == "lower"  # the flow lowers the AE's loss in every seed
    assert gfe.encode_nfe_per_image == 262.0 and ae.encode_nfe_per_image == 0.0
    (versus,) = section.gap_vs_gfe
    assert (versus.a, versus.b, versus.verdict) == ("AE", "GFE (adaptive step)", "higher")
    assert section.random_start is not None and section.random_start.verdict == "higher"
    assert section.random_start.difference.mean == pytest.approx(0.053)
    assert encoding_section(None, confidence=0.95).status == "not run"


def test_the_encoding_text_names_each_finding():
    section = encoding_section(encoding_record(), confidence=0.95)
    text = (
        formatting._environment().get_template("encoding.md.j2").render(encoding=section, cl="95%")
    )
    assert "AE's gap is **higher** than GFE (adaptive step)'s." in text
    assert "from z(0) ~ N(0, I) minus from z(0) = 0 is 0.053 [" in text
    assert "| AE | 3 | 0.2417 [0.2227, 0.2606] | 0.2037 [" in text


def test_gfe_encoder_inversion_suboptimal_is_judged_on_the_amortisation_gaps():
    registry = load_registry()
    claim = next(c for c in registry["claims"] if c["id"] == "gfe-encoder-inversion-suboptimal")
    params = params_from_dict({"efficiency": {"dataset": "mnist"}})
    judged = evaluate_claim(
        claim, registry["sources"], Evidence(params, encoding=encoding_record())
    )
    assert judged.verdict == "reproduced"  # GFE gap − AE gap: −0.036, every seed below 0
    assert evaluate_claim(claim, registry["sources"], Evidence(params)).verdict == "not tested"
