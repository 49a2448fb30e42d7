"""CIFAR-10: a verified tarball, decoded without unrestricted pickle, and the 3-channel path.

Everything runs offline: sockets are refused, torchvision's downloader is replaced by a fake,
and the tarball is a miniature with the real member layout (``cifar-10-batches-py/...``,
Python-2 pickled dicts) whose pinned SHA-256 and split sizes are monkeypatched in. The
training and evaluation path runs on 3-channel synthetic data, the stand-in for CIFAR-10.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
import torchvision.datasets.utils

from repro import data
from repro.config import Params, RunSpec
from repro.evaluate import evaluate_model, save_reconstruction_grid
from repro.io import sha256_bytes
from repro.train import fit, history_rows, load_trained
from tests.test_data import py2_pickle

TINY = {"train": 8, "val": 2, "test": 3}  # five training batches of 2 images, 3 test images
MEMBERS = "cifar-10-batches-py"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def tiny_parts(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 10 training images (all five batches in order) and the 3 test images, N x 3 x 32 x 32."""
    rng = np.random.default_rng(seed)
    n_train = TINY["train"] + TINY["val"]
    tr_x = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
    te_x = rng.integers(0, 256, (TINY["test"], 3, 32, 32), dtype=np.uint8)
    return tr_x, rng.integers(0, 10, n_train), te_x, rng.integers(0, 10, TINY["test"])


def batch_pickle(x: np.ndarray, y: np.ndarray, label: bytes, *, py2: bool) -> bytes:
    """A batch as the CIFAR-10 authors pickled it (Python 2, protocol 2), or re-pickled by
    Python 3 (protocol 4, ``bytes`` keys)."""
    batch = {
        b"batch_label": label,
        b"labels": [int(v) for v in y],
        b"data": x.reshape(len(x), 3072),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(x))],
    }
    return py2_pickle(batch) if py2 else pickle.dumps(batch, protocol=4)


def cifar_members(seed: int = 0, *, py2: bool = True) -> dict[str, bytes]:
    tr_x, tr_y, te_x, te_y = tiny_parts(seed)
    members = {
        f"{MEMBERS}/data_batch_{i + 1}": batch_pickle(
            tr_x[2 * i : 2 * i + 2], tr_y[2 * i : 2 * i + 2], b"training batch", py2=py2
        )
        for i in range(5)
    }
    members[f"{MEMBERS}/test_batch"] = batch_pickle(te_x, te_y, b"testing batch", py2=py2)
    members[f"{MEMBERS}/batches.meta"] = py2_pickle(
        {b"label_names": [b"airplane", b"automobile"], b"num_cases_per_batch": 2, b"num_vis": 3072}
    )
    members[f"{MEMBERS}/readme.html"] = b"<html>tiny</html>"
    return members


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def pin(monkeypatch: pytest.MonkeyPatch, blob: bytes) -> None:
    """Point CIFAR-10's pinned tarball hash and split sizes at a miniature tarball."""
    monkeypatch.setitem(data.RAW_SHA256, "cifar10", {data.CIFAR10_TARBALL: sha256_bytes(blob)})
    monkeypatch.setattr(data, "CIFAR10_SPLIT_SIZES", dict(TINY))


def mirror_with(tmp_path: Path, blob: bytes) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / data.CIFAR10_TARBALL).write_bytes(blob)
    return mirror


def prepare_from_mirror(tmp_path: Path, mirror: Path, **kw: object) -> dict:
    return data.prepare_dataset(
        "cifar10",
        tmp_path / "out",
        raw_dir=tmp_path / "raw",
        sources=("mirror",),
        mirror_dir=mirror,
        **kw,
    )


# --------------------------------------------------------------------------------------------
# the tarball: verified, decoded, split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("py2", [True, False], ids=["python2-batches", "python3-bytes-keys"])
def test_mirror_tarball_gives_colour_images_in_the_stated_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, py2: bool
) -> None:
    blob = tarball(cifar_members(py2=py2))
    pin(monkeypatch, blob)
    manifest = prepare_from_mirror(tmp_path, mirror_with(tmp_path, blob))

    assert manifest["source"] == "mirror" and manifest["split_definition"].startswith(
        "train = data_batch_1..5[:45000], val = data_batch_1..5[45000:50000]"
    )
    # The tarball is pinned and matched; the decoded content is recorded but has no pin.
    assert manifest["raw_files_verified"] is True and manifest["verified"] is False
    (record,) = manifest["raw_files"].values()
    assert record["sha256_expected"] == record["sha256_actual"] == sha256_bytes(blob)
    assert manifest["resize_method"] == data.CIFAR10_RESIZE_METHOD

    tr_x, tr_y, te_x, te_y = tiny_parts()
    n = TINY["train"]
    want = {"train": (tr_x[:n], tr_y[:n]), "val": (tr_x[n:], tr_y[n:]), "test": (te_x, te_y)}
    for split, (x, y) in want.items():
        images, labels = data.load_split(tmp_path / "out", split)
        assert images.dtype == torch.uint8 and images.shape == (len(x), 3, 32, 32)
        np.testing.assert_array_equal(images.numpy(), x)  # exact pixels: no resize at 32
        assert labels.tolist() == y.tolist()
        content = manifest["content_sha256"][split]
        assert content["images_32_sha256"] == sha256_bytes(x.tobytes())
        assert content["images_32_sha256"] == content["images_resized_sha256"]
        assert content["expected_images_32_sha256"] is None
        assert manifest["files"][split]["images_shape"] == [len(x), 3, 32, 32]


def test_tampered_tarball_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = tarball(cifar_members())
    pin(monkeypatch, blob)
    tampered = bytearray(blob)
    tampered[len(tampered) // 2] ^= 0xFF
    mirror = mirror_with(tmp_path, bytes(tampered))
    with pytest.raises(data.ChecksumError) as info:
        prepare_from_mirror(tmp_path, mirror)
    msg = str(info.value)
    assert str(mirror / data.CIFAR10_TARBALL) in msg
    assert sha256_bytes(blob) in msg and sha256_bytes(bytes(tampered)) in msg
    assert "delete" in msg and "mirror_dir" in msg
    assert not (tmp_path / "out").exists()  # nothing written from unverified data


def test_the_real_pin_refuses_any_other_tarball(tmp_path: Path) -> None:
    mirror = mirror_with(tmp_path, tarball(cifar_members()))  # not the real 170 MB file
    with pytest.raises(data.ChecksumError, match=data.RAW_SHA256["cifar10"][data.CIFAR10_TARBALL]):
        prepare_from_mirror(tmp_path, mirror)


class _Evil:
    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.func, (self.arg,)


@pytest.mark.parametrize(
    ("func", "qualname"),
    [(eval, "builtins.eval"), (os.system, f"{os.system.__module__}.system")],
)
def test_a_batch_naming_a_forbidden_global_is_refused_without_running_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, func: object, qualname: str
) -> None:
    marker = tmp_path / "pwned"
    code = (
        f"__import__('pathlib').Path({str(marker)!r}).touch()"
        if func is eval
        else f"touch {marker}"
    )
    members = cifar_members()
    members[f"{MEMBERS}/data_batch_3"] = pickle.dumps(
        {b"data": _Evil(func, code), b"labels": [0]}, protocol=4
    )
    blob = tarball(members)
    pin(monkeypatch, blob)  # even a tarball that passed its hash check cannot run code
    refused = rf"data_batch_3.*refused global {re.escape(qualname)}"
    with pytest.raises(data.CorruptFileError, match=refused):
        prepare_from_mirror(tmp_path, mirror_with(tmp_path, blob))
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.pop(f"{MEMBERS}/test_batch"), "has no member cifar-10-batches-py/test_batch"),
        (
            lambda m: m.update(
                {f"{MEMBERS}/data_batch_1": py2_pickle({b"data": np.zeros((2, 784), np.uint8)})}
            ),
            "data_batch_1: 'data' is uint8 \\(2, 784\\)",
        ),
        (
            lambda m: m.update(
                {
                    f"{MEMBERS}/data_batch_5": py2_pickle(
                        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}
                    )
                }
            ),
            "data_batch_5: labels outside 0..9",
        ),
    ],
    ids=["missing-member", "wrong-image-size", "bad-label"],
)
def test_a_malformed_tarball_names_the_file_and_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit, problem: str
) -> None:
    members = cifar_members()
    edit(members)
    blob = tarball(members)
    pin(monkeypatch, blob)
    mirror = mirror_with(tmp_path, blob)
    with pytest.raises(data.CorruptFileError, match=problem) as info:
        prepare_from_mirror(tmp_path, mirror)
    assert str(mirror / data.CIFAR10_TARBALL) in str(info.value)


def test_image_size_other_than_32_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size must be 32 for cifar10"):
        prepare_from_mirror(tmp_path, tmp_path, image_size=28)


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def test_torchvision_source_downloads_only_the_tarball_then_verifies_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = tarball(cifar_members())
    pin(monkeypatch, blob)
    calls: list[tuple[str, str, str, str | None, float | None]] = []

    def fake_download_url(url: str, root: str, filename: str, md5: str) -> None:
        calls.append((url, root, filename, md5, socket.getdefaulttimeout()))
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / filename).write_bytes(blob)

    def no_dataset(*args: object, **kwargs: object) -> None:
        raise AssertionError("CIFAR10() would unpickle the batches unrestricted")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fake_download_url)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", no_dataset)
    manifest = data.prepare_dataset(
        "cifar10", tmp_path / "out", raw_dir=tmp_path / "raw", sources=("torchvision",)
    )
    assert manifest["source"] == "torchvision"
    # torchvision's URL and MD5 are the ones this module documents
    assert calls == [
        (
            data.CIFAR10_URL,
            str((tmp_path / "raw" / "torchvision").resolve()),
            data.CIFAR10_TARBALL,
            data.CIFAR10_TARBALL_MD5,
            data.TORCHVISION_SOCKET_TIMEOUT_S,
        )
    ]


def test_offline_without_a_mirror_says_there_is_no_offline_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading cifar-10-python.tar.gz: no route to host")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    with pytest.raises(data.DataSourceError) as info:
        data.prepare_dataset("cifar10", tmp_path / "out", raw_dir=tmp_path / "raw")
    msg = str(info.value)
    assert "- torchvision: torchvision download failed" in msg and "no route to host" in msg
    assert "- mirror: mirror skipped" in msg
    assert "- registry: registry has no CIFAR-10" in msg
    assert "CIFAR-10 has no offline fallback" in msg
    assert "data.mirror_dir" in msg and data.CIFAR10_TARBALL in msg
    assert data.RAW_SHA256["cifar10"][data.CIFAR10_TARBALL] in msg
    assert "idx" not in msg  # not the MNIST advice


# --------------------------------------------------------------------------------------------
# three channels through training and evaluation (synthetic stand-in for CIFAR-10)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def colour_params(tiny_params: Params) -> Params:
    return dataclasses.replace(
        tiny_params, data=dataclasses.replace(tiny_params.data, synthetic_channels=3)
    )


@pytest.fixture
def colour_data_dir(colour_params: Params, tmp_path: Path) -> Path:
    out = tmp_path / "data" / "synthetic"
    d = colour_params.data
    data.prepare_dataset(
        "synthetic",
        out,
        raw_dir=tmp_path / "raw",
        synthetic_sizes=d.synthetic_sizes,
        synthetic_channels=d.synthetic_channels,
    )
    return out


@pytest.mark.parametrize("method", ["gon", "ae"])
def test_three_channel_data_trains_and_evaluates_with_a_three_channel_decoder(
    method: str, colour_params: Params, colour_data_dir: Path, tmp_path: Path
) -> None:
    spec = RunSpec("synthetic", method, 8, 0)
    run_dir = tmp_path / "run"
    summary = fit(spec, colour_params, data_dir=colour_data_dir, run_dir=run_dir)
    rows = history_rows(run_dir / "history.csv")
    assert len(rows) == colour_params.train.epochs
    assert all(np.isfinite([r["train_mse_per_pixel"], r["val_mse_per_pixel"]]).all() for r in rows)
    assert np.isfinite(summary["final_val_mse_per_pixel"])

    splits = {s: data.load_split(colour_data_dir, s)[0] for s in ("train", "val", "test")}
    model, _ = load_trained(run_dir, spec, colour_params, channels=splits["test"].shape[1])
    x = splits["test"][:16].float() / 255
    z, x_hat = model(x)
    assert x_hat.shape == (16, 3, 32, 32)  # the decoder's output channels come from the data

    ev = colour_params.evaluate
    result = evaluate_model(
        model,
        {"val": splits["val"], "test": splits["test"]},
        batch_size=ev.batch_size,
        order_shuffles=ev.order_shuffles,
    )
    for mode in ("running", "batch"):
        for split in ("val", "test"):
            losses = result["losses"][mode][split]
            assert all(np.isfinite(v) for v in losses.values()), (mode, split, losses)
    save_reconstruction_grid(
        model, splits["test"], run_dir / "recon.png", bn_mode=ev.headline_bn, batch_size=16
    )
    assert (run_dir / "recon.png").stat().st_size > 0
