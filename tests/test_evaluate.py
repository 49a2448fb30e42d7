"""Held-out evaluation: BN modes, order independence, reference losses (docs/protocol.md §5)."""

import torch

from repro.encoders import build_model, gon_training_loss
from repro.evaluate import evaluate_model, order_spread, per_image_sse, reference_losses
from tests.conftest import blob_images


def briefly_trained_gon(steps: int = 20) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("gon", nz=8, ngf=4, inner_norm=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = blob_images(64).float() / 255
    for i in range(steps):
        x = data[(i * 16) % 64 : (i * 16) % 64 + 16]
        _, x_hat = model(x)
        loss = gon_training_loss(x_hat, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_with_running_statistics_an_images_score_does_not_depend_on_test_set_order():
    model, images = briefly_trained_gon(), blob_images(48, seed=3)
    base = per_image_sse(model, images, batch_size=16, bn_mode="running")
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    shuffled = per_image_sse(model, images, batch_size=16, bn_mode="running", order=perm)
    torch.testing.assert_close(shuffled, base, rtol=1e-5, atol=1e-6)


def test_with_batch_statistics_scores_depend_on_batch_mates_and_the_spread_is_measured():
    model, images = briefly_trained_gon(), blob_images(48, seed=3)
    batch = order_spread(model, images, batch_size=16, bn_mode="batch", shuffles=2)
    running = order_spread(model, images, batch_size=16, bn_mode="running", shuffles=2)
    assert batch["test_sse_per_image_max_abs_diff"] > 1e-4
    assert running["test_sse_per_image_max_abs_diff"] < 1e-4
    assert batch["shuffles"] == 2


def test_evaluation_leaves_the_trained_model_untouched():
    model = briefly_trained_gon()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_model(
        model,
        {"val": blob_images(32, seed=1), "test": blob_images(32, seed=2)},
        batch_size=16,
        order_shuffles=1,
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training  # mode restored / never changed


def test_both_reductions_differ_by_the_number_of_pixels():
    model = briefly_trained_gon()
    out = evaluate_model(model, {"test": blob_images(32, seed=2)}, batch_size=16, order_shuffles=1)
    for mode in ("running", "batch"):
        t = out["losses"][mode]["test"]
        assert abs(t["sse_per_image"] / 1024 - t["mse_per_pixel"]) < 1e-12
        assert t["latent_norm"] > 0


def test_reference_losses_zero_image_mean_image_and_pca():
    train, test = blob_images(200, seed=0), blob_images(50, seed=1)
    ref = reference_losses(train, test, [1, 8, 1024])
    x = test.flatten(1).double() / 255
    assert abs(ref["zero_image"]["sse_per_image"] - float(x.pow(2).sum(1).mean())) < 1e-9
    # more components, lower error; all 1024 components reconstruct perfectly
    assert (
        ref["mean_train_image"]["sse_per_image"]
        > ref["pca"]["1"]["sse_per_image"]
        > ref["pca"]["8"]["sse_per_image"]
    )
    assert ref["pca"]["1024"]["sse_per_image"] < 1e-6
