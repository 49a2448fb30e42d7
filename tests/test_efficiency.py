"""The GFE studies on tiny data: every method trains and is scored; convergence curves are sane."""

import math

import pytest
import torch

from repro.config import ConvergenceConfig
from repro.convergence import convergence_curves
from repro.efficiency import train_efficiency_run
from repro.encoders import build_model
from repro.models import MLPDecoder, count_parameters
from tests.conftest import blob_images


def test_the_gfe_code_mlp_decoder_has_its_published_shape():
    decoder = MLPDecoder(20, (1, 28, 28))
    # 20→150→300→600→784 with biases
    assert count_parameters(decoder) == (20 * 150 + 150) + (150 * 300 + 300) + (300 * 600 + 600) + (
        600 * 784 + 784
    )
    assert decoder(torch.zeros(2, 20, 1, 1)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("method", ["gfe", "gfe2", "gfe_adaptive"])
def test_gfe_entries_build_and_encode_with_either_architecture(method):
    for arch in ("mlp", "conv"):
        model = build_model(
            method, nz=4, ngf=2, architecture=arch, gfe={"tau": 5.0, "max_nfe": 500}
        ).eval()
        with torch.no_grad():
            z, x_hat = model(torch.rand(3, 1, 32, 32))
        assert z.shape == (3, 4, 1, 1) and torch.isfinite(x_hat).all()
        assert model.encoder.last_stats.nfe > 0


@pytest.mark.parametrize("method", ["gfe_adaptive", "gon", "ae"])
def test_every_method_trains_on_a_subset_and_is_scored_on_held_out_images(tiny_params, method):
    cfg = tiny_params.efficiency
    train, test = blob_images(64, seed=0), blob_images(16, seed=1)
    model, curve = train_efficiency_run(
        method,
        cfg,
        tiny_params.gfe,
        train_uint8=train,
        test_uint8=test,
        train_size=32,
        seed=0,
        name=f"test/{method}",
    )
    assert [row["step"] for row in curve] == [0, 2, 4]
    assert [row["images_seen"] for row in curve] == [0, 32, 64]
    for row in curve:
        assert all(math.isfinite(v) for v in row.values())
    # gradient evaluations spent finding latents: many for GFE, one per image batch for GON, none for AE
    expected_nfe = {"gon": 4, "ae": 0}.get(method)
    if expected_nfe is None:
        assert curve[-1]["train_nfe"] > 4
    else:
        assert curve[-1]["train_nfe"] == expected_nfe
    assert curve[-1]["train_seconds"] > 0


def test_same_seed_same_curve(tiny_params):
    cfg, train, test = tiny_params.efficiency, blob_images(64, seed=0), blob_images(16, seed=1)
    runs = [
        train_efficiency_run(
            "ae",
            cfg,
            tiny_params.gfe,
            train_uint8=train,
            test_uint8=test,
            train_size=32,
            seed=3,
            name="t",
        )[1]
        for _ in range(2)
    ]
    assert [r["test_bce"] for r in runs[0]] == [r["test_bce"] for r in runs[1]]


def test_convergence_curves_cover_three_flows_and_the_adaptive_step_never_raises_a_loss(
    tiny_params,
):
    torch.manual_seed(0)
    decoder = MLPDecoder(20, (1, 32, 32))
    cfg = ConvergenceConfig(images=6, iterations=15, step_size=1.0)
    rows = convergence_curves(decoder, blob_images(8, seed=2), cfg, tiny_params.gfe, "bce")
    flows = {r["flow"] for r in rows}
    assert flows == {"first_order", "second_order", "adaptive_step"}
    for flow in flows:
        iters = sorted({r["iteration"] for r in rows if r["flow"] == flow})
        assert iters[0] == 0 and iters[-1] <= 15
    adaptive = {}
    for r in rows:
        if r["flow"] == "adaptive_step":
            adaptive.setdefault(r["image"], []).append((r["iteration"], r["loss"]))
    for seq in adaptive.values():
        losses = [v for _, v in sorted(seq)]
        assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:], strict=False))


def test_a_flow_that_exceeds_its_evaluation_cap_names_the_run_the_batch_and_the_solver(tiny_params):
    import dataclasses

    from repro.errors import FlowError

    gfe = dataclasses.replace(tiny_params.gfe, max_nfe=3)
    with pytest.raises(
        FlowError,
        match=r"run/x: test encode at step 0 \(adaptive_step flow, .*h_max=10.0.*max_nfe=3\)",
    ):
        train_efficiency_run(
            "gfe_adaptive",
            tiny_params.efficiency,
            gfe,
            train_uint8=blob_images(64),
            test_uint8=blob_images(16, seed=1),
            train_size=32,
            seed=0,
            name="run/x",
        )
