"""Benchmark: our training loop against a re-statement of the original GON.py loop.

In one invocation and on the same data, device and initial weights, this times

* **baseline**: the loop of the public ``GON.py`` (cwkx/GON), re-stated here (not copied): a
  torchvision-style dataset that hands out PIL images (``Image.fromarray(img, mode="L")`` as
  ``torchvision.datasets.MNIST.__getitem__`` does) through ``Compose([Resize(32), ToTensor()])``,
  a ``DataLoader(batch_size=64, shuffle=True, drop_last=True)`` with ``num_workers=0`` (GON.py
  passes none) walked by an endless ``cycle`` (one epoch = one pass of a fresh iterator), per
  step ``x, t = x.to(device), t.to(device)``,
  ``z = zeros(64, nz, 1, 1).to(device).requires_grad_()``, the inner loss
  ``((D(z) - x)**2).sum(1).mean()``,
  ``grad = autograd.grad(inner, [z], create_graph=True, retain_graph=True)``, ``z = -grad``, the
  same outer loss, ``zero_grad()``, ``backward()``, ``Adam(lr 1e-4).step()``. GON.py prints
  ``loss.item()`` (and saves an image grid) every 100 steps; the ``.item()`` is kept, the image
  file is not (disk I/O, not training).
  GON.py sets no thread count and no determinism flag: the baseline runs with torch's defaults.
  The model is the library's (the decoder params.yaml trains; a GON.py older than commit
  ``9f8e1f3`` uses ReLU where the current one uses ELU: docs/protocol.md §1), so that the
  comparison isolates the loop.
* **ours**: the exact loop body of :func:`repro.train.fit` (data resident as one uint8 tensor,
  a batch is an index with a permutation, :func:`repro.train.to_unit_float`, the model's own
  forward, :func:`repro.encoders.gon_training_loss`, ``zero_grad(set_to_none=True)``, Adam, the
  loss summed on the device and read every 50 steps), built from the library's pieces, plus
* **fit**: :func:`repro.train.fit` itself on a 2-epoch run over the same images; its
  ``history`` ``seconds`` of epoch 2 (warm; validation scoring excluded by ``fit``) is reported
  as ``fit_epoch_s``.

Methods: ``gon`` and ``ae`` (the baseline AE is the same GON.py loop with ``z = E(x)``; the public
GON code has no AE) at the ``model``/``train`` settings of params.yaml, and ``gfe``: one step of
the data-efficiency study (``efficiency``: ``gfe_adaptive``, MLP decoder, batch 16, RMSprop,
BCE; the loop of :func:`repro.efficiency.train_efficiency_run`) against the same step fed by a
DataLoader over PIL images with ``num_workers=2`` and per-step ``.to(device)``, as the public GFE
code (k-flouris/gfe) loads MNIST (it uses ``ToTensor()`` at 28x28; here ``Resize(32)`` is kept so
both variants train on the same 32x32 images). For GFE the loop is not where the time goes: one
step runs about 115 decoder gradient evaluations, so the ratio is expected near 1.

Fair comparison: both variants build the model with the same seed (same initial weights) and
walk the same permutation (``torch.randperm(n, generator=Generator().manual_seed(seed))``, as
``fit`` draws it; the baseline's DataLoader gets it as its sampler, which costs what
``shuffle=True``'s RandomSampler costs: one ``randperm(n).tolist()`` per epoch). So they see the
same batches in the same order and their final losses must agree up to the resize difference
(PIL's 8-bit fixed-point bilinear vs our float antialiased interpolate rounded to uint8, at most
one grey level per pixel; see tests/test_bench.py). Warm-up steps are excluded from timing.
Each (method, variant, repetition) runs in a fresh subprocess so that its peak resident memory
(``VmHWM``) is its own; repetitions are interleaved (baseline, ours, fit, baseline, ...) and the
median is reported, with the 1-minute load average around each and the share of the CPUs that
*other* processes used during the timed epoch (from /proc/stat), so a disturbed run shows.

Outputs: ``--out`` (default reports/benchmarks.json), merged by (name, device) with what is
already there: ``benchmarks`` (name, device, ours, baseline, unit, ratio = baseline / ours, plus
steps/s, peak memory, thread settings, load), ``experiments`` (option sweeps of ours),
``compile`` (torch.compile findings) and ``profile``.

    python bench/train_speed.py --methods gon,ae,gfe --reps 5 --warmup 20   # the table
    python bench/train_speed.py --methods gon --experiments threads,flags      # option sweeps
    python bench/train_speed.py --methods gon --experiments omp --contend 1    # a busy machine
    python bench/train_speed.py --compile-check                    # torch.compile on the steps
    python bench/train_speed.py --profile                   # where a GON step's time goes

Experiment groups (:data:`EXPERIMENTS`): ``threads`` (intra-/inter-op threads of ours and the
baseline), ``omp`` (``OMP_WAIT_POLICY``), ``flags`` / ``flags2`` (at 1 / 2 threads:
determinism, ``fill_uninitialized_memory``, channels_last, mkldnn off, ELU through ``exp``,
fused Adam), ``compile`` (``torch.compile`` of the forward + loss). Each is measured against the
group's first entry in the same invocation.

Data: ``--data-dir`` (default data) holds the canonical 32x32 tensors of the data stage; the
28x28 originals come from ``--raw-dir`` (default data/raw: the idx files or MNIST's
``mnist.pkl.gz``), decoded by the data module's verified readers. The first ``--images`` training
images are used; the script checks that our resize of the 28x28 originals gives exactly the
canonical 32x32 tensors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def machine_free(text: str) -> str:
    """``text`` (an error, a traceback) without this machine's paths: the checkout's and the
    installed packages' directories become relative, home ``~``. benchmarks.json is committed."""
    import site
    import sysconfig

    from repro.tracking import portable

    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return portable(text, ROOT, *map(Path, packages | set(site.getsitepackages())))


METHODS = ("gon", "ae", "gfe")
DEFAULT_OUT = Path("reports/benchmarks.json")
GON_LOG_EVERY = 100  # GON.py prints loss.item() every 100 steps
FIT_LOG_EVERY = 50  # fit reads the loss every 50 steps
PHASES = ("data", "inner_forward", "inner_grad", "outer_forward", "outer_backward", "optimizer")

#: Named option sets for ``--experiments`` (each a list of (label, child options)). "ours" is
#: the library loop; "baseline" the GON.py re-statement.
EXPERIMENTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "threads": [
        ("ours threads=1", {"variant": "ours", "threads": 1}),
        ("ours threads=2", {"variant": "ours", "threads": 2}),
        ("ours threads=2 interop=1", {"variant": "ours", "threads": 2, "interop": 1}),
        ("baseline threads=1", {"variant": "baseline", "threads": 1}),
        ("baseline threads=2", {"variant": "baseline", "threads": 2}),
    ],
    "flags": [
        ("ours threads=1", {"variant": "ours", "threads": 1}),
        (
            "ours threads=1 deterministic=off",
            {"variant": "ours", "threads": 1, "deterministic": False},
        ),
        (
            "ours threads=1 fill_uninitialized_memory=off",
            {"variant": "ours", "threads": 1, "fill_uninitialized": False},
        ),
        ("ours threads=1 channels_last", {"variant": "ours", "threads": 1, "channels_last": True}),
        ("ours threads=1 mkldnn=off", {"variant": "ours", "threads": 1, "mkldnn": False}),
        ("ours threads=1 exp_elu", {"variant": "ours", "threads": 1, "exp_elu": True}),
        ("ours threads=1 fused_adam", {"variant": "ours", "threads": 1, "fused_adam": True}),
    ],
    "flags2": [
        ("ours threads=2", {"variant": "ours", "threads": 2}),
        (
            "ours threads=2 fill_uninitialized_memory=off",
            {"variant": "ours", "threads": 2, "fill_uninitialized": False},
        ),
        ("ours threads=2 channels_last", {"variant": "ours", "threads": 2, "channels_last": True}),
        ("ours threads=2 exp_elu", {"variant": "ours", "threads": 2, "exp_elu": True}),
        ("ours threads=2 fused_adam", {"variant": "ours", "threads": 2, "fused_adam": True}),
        (
            "ours threads=2 all (no fill, exp_elu, fused_adam)",
            {
                "variant": "ours",
                "threads": 2,
                "fill_uninitialized": False,
                "exp_elu": True,
                "fused_adam": True,
            },
        ),
    ],
    "omp": [
        ("ours threads=1", {"variant": "ours", "threads": 1}),
        ("ours threads=2", {"variant": "ours", "threads": 2}),
        (
            "ours threads=2 OMP_WAIT_POLICY=PASSIVE",
            {"variant": "ours", "threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        ),
        (
            "ours threads=2 OMP_WAIT_POLICY=ACTIVE",
            {"variant": "ours", "threads": 2, "env": {"OMP_WAIT_POLICY": "ACTIVE"}},
        ),
    ],
    "compile": [
        ("ours threads=1", {"variant": "ours", "threads": 1}),
        ("ours threads=1 compile", {"variant": "ours", "threads": 1, "compile": "step"}),
    ],
}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_native_train(dataset: str, raw_dir: Path) -> torch.Tensor:
    """The 28x28 uint8 training images (N x 28 x 28) from the raw files the data stage used.

    Uses the data module's verified readers (SHA-256 checked): the four idx files (in
    ``raw_dir/<dataset>`` or torchvision's ``raw_dir/torchvision/<Class>/raw``), else MNIST's
    ``mnist.pkl.gz``. The study's train split is the first 50,000 of these.
    """
    from repro import data as rd

    dirs = [raw_dir / dataset]
    if dataset in rd.TORCHVISION_CLASS:
        dirs.append(raw_dir / "torchvision" / rd.TORCHVISION_CLASS[dataset] / "raw")
    for d in dirs:
        files = rd._find_idx_files(d) if d.is_dir() else None
        if files:
            return torch.from_numpy(rd._load_idx_set(dataset, files).train_images.copy())
    pickle_path = raw_dir / dataset / rd.MNIST_PICKLE
    if dataset == "mnist" and pickle_path.is_file():
        return torch.from_numpy(rd._load_mnist_pickle(pickle_path).train_images.copy())
    raise FileNotFoundError(
        f"no raw 28x28 {dataset} files under {raw_dir} (idx files or {rd.MNIST_PICKLE}); "
        "run the data stage (dvc repro) or pass --raw-dir"
    )


def bench_data(dataset: str, data_dir: Path, raw_dir: Path, n: int) -> dict[str, torch.Tensor]:
    """First ``n`` training images: 28x28 originals, the canonical 32x32 tensor and labels."""
    from repro.data import load_split, resize_to

    images32, labels = load_split(data_dir / dataset, "train")
    if n > len(images32):
        raise ValueError(f"--images {n} exceeds the {len(images32)} training images")
    images28 = load_native_train(dataset, raw_dir)[:n].contiguous()
    images32, labels = images32[:n].clone(), labels[:n].clone()
    if not torch.equal(resize_to(images28, images32.shape[-1]), images32):
        raise ValueError("the raw 28x28 images do not resize to the canonical 32x32 tensor")
    return {"images28": images28, "images32": images32, "labels": labels}


def pil_from_uint8(img: torch.Tensor):
    """``torchvision.datasets.MNIST``'s conversion: a uint8 H x W array to a PIL "L" image."""
    try:
        from torchvision.utils import _Image_fromarray  # what MNIST.__getitem__ calls
    except ImportError:  # older torchvision
        from PIL import Image

        return Image.fromarray(img.numpy(), mode="L")
    return _Image_fromarray(img.numpy(), mode="L")


def make_pil_dataset(images28: torch.Tensor, labels: torch.Tensor, size: int = 32):
    """A torchvision dataset over in-memory 28x28 uint8 images, item = MNIST's ``__getitem__``.

    MNIST's raw idx files are not on this machine (the registry fallback is a pickle), so this
    subclass of ``VisionDataset`` holds the same ``data`` / ``targets`` tensors that
    ``torchvision.datasets.MNIST`` loads and does in ``__getitem__`` exactly what it does:
    ``int(target)``, PIL image of mode "L", then the transform GON.py passes,
    ``Compose([Resize(size), ToTensor()])``.
    """
    from torchvision import transforms
    from torchvision.datasets import VisionDataset

    class PILDigits(VisionDataset):
        def __init__(self, data: torch.Tensor, targets: torch.Tensor, transform: Callable):
            super().__init__(root="", transform=transform)
            self.data, self.targets = data, targets

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int) -> tuple[Any, int]:
            img, target = self.data[index], int(self.targets[index])
            img = pil_from_uint8(img)
            if self.transform is not None:
                img = self.transform(img)
            return img, target

    transform = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    return PILDigits(images28, labels, transform)


# --------------------------------------------------------------------------------------------
# Models and the two loops
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Setting:
    """What one method trains with (from params.yaml): batch, optimiser, loss."""

    method: str
    batch: int
    pool: int  # images the batches are drawn from
    make_model: Callable[[], torch.nn.Module]
    make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer]
    nz: int
    loss: str = "gon"  # gon (GON.py's per-pixel MSE) | bce | sse (efficiency loss)


class ExpELU(torch.nn.Module):
    """ELU through ``exp`` instead of ``expm1`` (a bench experiment, not the library's model).

    ``torch.nn.ELU`` calls ``expm1``, which this CPU build does not vectorise (about 20x the
    time of ``exp`` here). ``where(x > 0, x, exp(min(x, 0)) - 1)`` is the same function up to
    float rounding near 0 (absolute difference below 1e-7) and is twice differentiable; the
    clamp keeps the unused branch finite so that its zero gradient stays zero.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x, torch.exp(x.clamp(max=0)) - 1)


def swap_elu(model: torch.nn.Module) -> int:
    """Replace every ``nn.ELU`` (alpha 1) in ``model`` by :class:`ExpELU`; returns how many."""
    count = 0
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ELU) and child.alpha == 1.0:
                setattr(module, name, ExpELU())
                count += 1
    return count


def load_params(path: Path):
    from repro.config import load_params as _load

    return _load(path)


def setting_for(method: str, params, channels: int = 1, image_size: int = 32) -> Setting:
    """The model, optimiser and batch the pipeline uses for ``method`` (same code paths)."""
    from repro.config import RunSpec
    from repro.efficiency import efficiency_model
    from repro.train import build_run_model

    if method in ("gon", "ae"):
        cfg = params.train
        nz = params.model.nz[0]
        spec = RunSpec(params.data.datasets[0], method, nz, 0)
        return Setting(
            method=method,
            batch=cfg.batch_size,
            pool=cfg.train_images,
            make_model=lambda: build_run_model(spec, params, channels),
            make_optimizer=lambda m: torch.optim.Adam(
                m.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)
            ),
            nz=nz,
        )
    if method == "gfe":
        eff = params.efficiency
        return Setting(
            method=method,
            batch=eff.batch_size,
            pool=max(eff.train_sizes),
            make_model=lambda: efficiency_model(
                "gfe_adaptive", eff, params.gfe, channels, image_size, where="bench"
            ),
            make_optimizer=lambda m: torch.optim.RMSprop(
                m.parameters(), lr=eff.lr, alpha=0.9, eps=1e-6
            ),
            nz=eff.nz,
            loss=eff.loss,
        )
    raise ValueError(f"unknown method {method!r}; allowed: {list(METHODS)}")


def baseline_loss(setting: Setting, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One step's loss as the original scripts write it (GON.py's expressions, re-stated)."""
    decoder = model.decoder
    if setting.method == "gon":
        z = torch.zeros(x.shape[0], setting.nz, 1, 1).to(x.device).requires_grad_()
        g = decoder(z)
        inner = ((g - x) ** 2).sum(1).mean()
        grad = torch.autograd.grad(inner, [z], create_graph=True, retain_graph=True)[0]
        z = -grad
        g = decoder(z)
        return ((g - x) ** 2).sum(1).mean()
    if setting.method == "ae":
        g = decoder(model.encoder.net(x))
        return ((g - x) ** 2).sum(1).mean()
    from repro.flows import per_sample_loss  # gfe: the same model; only the data path differs

    _, x_hat = model(x)
    return per_sample_loss(setting.loss, x_hat, x).mean()


def ours_loss(setting: Setting, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One step's loss exactly as fit (gon, ae) or train_efficiency_run (gfe) computes it."""
    from repro.encoders import gon_training_loss
    from repro.flows import per_sample_loss

    _, x_hat = model(x)
    if setting.loss == "gon":
        return gon_training_loss(x_hat, x)
    return per_sample_loss(setting.loss, x_hat, x).mean()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_loader(dataset, batch: int, order: torch.Tensor, workers: int):
    """GON.py's DataLoader (drop_last, no workers unless asked); the sampler is the permutation."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=order.tolist(), drop_last=True, num_workers=workers
    )


def flow_nfe(model: torch.nn.Module) -> int:
    """Gradient evaluations of the latest GFE encode (0 for GON/AE)."""
    stats = getattr(model.encoder, "last_stats", None)
    return int(stats.nfe) if stats is not None and hasattr(stats, "rejected") else 0


def run_baseline(
    setting: Setting,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device,
    max_steps: int | None = None,
) -> tuple[int, float, int]:
    """GON.py's loop over ``loader``; returns (steps, last loss, GFE gradient evaluations)."""
    model.train()
    step, nfe = -1, 0
    for step, (x, t) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            step -= 1
            break
        x, t = x.to(device), t.to(device)
        loss = baseline_loss(setting, model, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        nfe += flow_nfe(model)
        if step % GON_LOG_EVERY == 0 and step > 0:
            print(f"Step: {step}  Loss: {loss.item():.3f}", file=sys.stderr)
    return step + 1, float(loss.item()), nfe


def run_ours(
    setting: Setting,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    order: torch.Tensor,
    steps: int,
    step_fn: Callable | None = None,
) -> tuple[int, float, int]:
    """fit's loop body (gon, ae) / train_efficiency_run's (gfe).

    Returns (steps, last loss, GFE gradient evaluations). ``step_fn(x) -> loss`` replaces the
    forward/backward/Adam part (a compiled step).
    """
    from repro.train import to_unit_float

    b = setting.batch
    gfe = setting.method == "gfe"
    loss_sum = torch.zeros((), device=data.device)
    loss, nfe = loss_sum, 0
    model.train()
    for step in range(steps):
        x = to_unit_float(data[order[step * b : (step + 1) * b]])
        if step_fn is not None:
            loss = step_fn(x)
        else:
            if gfe:
                model.train()  # train_efficiency_run re-asserts it every step
            loss = ours_loss(setting, model, x)
            if gfe and not torch.isfinite(loss):  # its divergence guard
                raise RuntimeError(f"non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if gfe:
            nfe += flow_nfe(model)
            continue
        loss_sum += loss.detach()
        if step % FIT_LOG_EVERY == 0 or step == steps - 1:
            loss.item()  # fit reads the loss here (divergence guard, progress bar)
    return steps, float(loss.item()), nfe


# --------------------------------------------------------------------------------------------
# One measurement (runs in its own process)
# --------------------------------------------------------------------------------------------


def configure(opts: dict[str, Any], device: torch.device) -> None:
    """Thread and backend settings of one measurement, set before any torch work."""
    if opts.get("interop"):
        torch.set_num_interop_threads(int(opts["interop"]))
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    if opts.get("deterministic") and device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    if opts.get("fill_uninitialized") is False:
        torch.utils.deterministic.fill_uninitialized_memory = False
    if opts.get("mkldnn") is False:
        torch.backends.mkldnn.enabled = False


def peak_rss_mib() -> float:
    """Peak resident memory of this process image, MiB.

    ``VmHWM`` of /proc/self/status where there is one: ``ru_maxrss`` would not do, because
    Linux carries the parent's resident size at fork over into the child's ``ru_maxrss`` across
    ``exec`` (a big parent would set every child's floor). Elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 if sys.platform != "darwin" else 1024.0**2  # Linux KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes of the machine used, CPU seconds this process and its waited-for
    children used), for the share of the machine other processes took during a measurement."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    mine = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return busy, mine


def others_share(before: tuple[float, float], after: tuple[float, float], wall: float) -> float:
    """Fraction of the machine's CPU capacity used by *other* processes in ``wall`` seconds."""
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / (wall * (os.cpu_count() or 1))


def children_peak_rss_mib() -> float:
    """Largest ``ru_maxrss`` of waited-for children (DataLoader workers: forked, so this counts
    the copy-on-write pages they share with this process too)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def compiled_step(setting, model, optimizer, mode: str) -> Callable:
    """``torch.compile`` applied to ours: the forward + loss (backward and Adam stay eager)."""
    compiled = torch.compile(lambda x: ours_loss(setting, model, x))

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = compiled(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def measure(opts: dict[str, Any]) -> dict[str, Any]:
    """Warm-up, then one timed epoch of ``opts['variant']``; time, memory, loss."""
    device = torch.device(opts["device"])
    variant = opts["variant"]
    # GON.py sets nothing: the baseline keeps torch's defaults unless a thread count is asked.
    configure(opts, device)
    blob = torch.load(opts["data"], weights_only=True)
    params = load_params(Path(opts["params"]))
    channels, size = blob["images32"].shape[1], blob["images32"].shape[-1]
    setting = setting_for(opts["method"], params, channels, size)
    n = opts["images"]
    pool = setting.pool if setting.method == "gfe" else n
    steps = n // setting.batch
    rss_start = peak_rss_mib()
    if variant == "fit":
        return measure_fit(opts, params, setting, blob, rss_start)

    torch.manual_seed(opts["seed"])
    model = setting.make_model().to(device)
    if opts.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if opts.get("exp_elu"):
        swap_elu(model)
    optimizer = setting.make_optimizer(model)
    if opts.get("fused_adam"):
        if not isinstance(optimizer, torch.optim.Adam):
            raise ValueError("fused_adam applies to the Adam methods (gon, ae)")
        optimizer = torch.optim.Adam(model.parameters(), **optimizer.defaults | {"fused": True})
    order_gen = torch.Generator().manual_seed(opts["seed"])
    warm_order, order = (torch.randperm(pool, generator=order_gen) for _ in range(2))
    if setting.method == "gfe":  # the efficiency study: batches out of the first `pool` images
        order = order[: steps * setting.batch]
    warmup = opts["warmup"]
    step_fn = None
    if variant == "baseline":
        dataset = make_pil_dataset(blob["images28"][:pool], blob["labels"][:pool], size)
        workers = opts["workers"]
        run_baseline(
            setting,
            model,
            optimizer,
            make_loader(dataset, setting.batch, warm_order, workers),
            device,
            max_steps=warmup,
        )
        loader = make_loader(dataset, setting.batch, order, workers)
        run = lambda: run_baseline(setting, model, optimizer, loader, device)  # noqa: E731
    else:
        data = blob["images32"][:pool].to(device)
        if opts.get("channels_last"):
            data = data.contiguous(memory_format=torch.channels_last)
        if opts.get("compile"):
            step_fn = compiled_step(setting, model, optimizer, opts["compile"])
        run_ours(setting, model, optimizer, data, warm_order.to(device), warmup, step_fn=step_fn)
        dev_order = order.to(device)
        run = lambda: run_ours(  # noqa: E731
            setting, model, optimizer, data, dev_order, steps, step_fn=step_fn
        )
    sync(device)
    rss_before = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    done, last_loss, nfe = run()
    sync(device)
    seconds = time.perf_counter() - t0
    cpu1 = cpu_seconds()
    out = {
        "seconds": seconds,
        "steps": done,
        "images": done * setting.batch,
        "steps_per_s": done / seconds,
        "last_loss": last_loss,
        "nfe": nfe,
        "others_cpu_share": others_share(cpu0, cpu1, seconds),
        "own_cpu_per_wall": (cpu1[1] - cpu0[1]) / seconds,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "rss_start_mib": rss_start,
        "rss_before_timed_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "worker_peak_rss_mib": children_peak_rss_mib(),
    }
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def measure_fit(opts, params, setting: Setting, blob, rss_start: float) -> dict[str, Any]:
    """repro.train.fit itself: 2 epochs over the same images; epoch 2's seconds (warm)."""
    from repro.config import RunSpec
    from repro.io import save_torch
    from repro.train import fit

    if setting.method not in ("gon", "ae"):
        raise ValueError("the fit variant exists for gon and ae only")
    n = opts["images"]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        save_torch(data_dir / "train.pt", {"images": blob["images32"], "labels": blob["labels"]})
        val = slice(0, min(64, n))
        save_torch(
            data_dir / "val.pt", {"images": blob["images32"][val], "labels": blob["labels"][val]}
        )
        train = dataclasses.replace(
            params.train,
            epochs=opts.get("fit_epochs", 2),
            train_images=n,
            val_images=val.stop,
            curve_every=0,
            device=opts["device"],
            num_threads=int(opts.get("threads") or 0),
        )
        p = dataclasses.replace(params, train=train)
        spec = RunSpec("bench", setting.method, setting.nz, opts["seed"])
        summary = fit(spec, p, data_dir=data_dir, run_dir=Path(tmp) / "run")
        from repro.train import history_rows

        rows = history_rows(Path(tmp) / "run" / "history.csv")
    warm = [r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]]
    seconds = statistics.median(warm)
    steps = n // setting.batch
    return {
        "seconds": seconds,
        "epoch_seconds_all": [r["seconds"] for r in rows],
        "steps": steps,
        "images": steps * setting.batch,
        "steps_per_s": steps / seconds,
        "last_loss": rows[-1]["train_mse_per_pixel"],
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
        "cuda_peak_mib": summary.get("cuda_peak_bytes", float("nan")) / 2**20,
    }


def run_child(opts: dict[str, Any], timeout: float = 600) -> subprocess.CompletedProcess:
    """This script in a fresh interpreter: its own peak memory, its own thread pool."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(opts.get("env", {}))  # e.g. OMP_WAIT_POLICY, read when the OpenMP runtime starts
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(opts)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0 or not proc.stdout.strip().splitlines()[-1:]:
        raise RuntimeError(f"child {opts} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def spawn(opts: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """One measurement in its own process; its JSON result plus the load average around it."""
    load_before = os.getloadavg()[0]
    proc = run_child(opts, timeout)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load1_before"], result["load1_after"] = load_before, os.getloadavg()[0]
    return result


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from repro.provenance import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} logical CPUs"


def med(results: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def summarise(
    name: str,
    device: str,
    unit: str,
    ours: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    o, b = med(ours, "seconds"), med(baseline, "seconds")
    entry = {
        "name": name,
        "device": device,
        "ours": o,
        "baseline": b,
        "unit": unit,
        "ratio": b / o,
        "steps_per_s_ours": med(ours, "steps_per_s"),
        "steps_per_s_baseline": med(baseline, "steps_per_s"),
        "seconds_ours_all": [r["seconds"] for r in ours],
        "seconds_baseline_all": [r["seconds"] for r in baseline],
        "peak_rss_mib_ours": med(ours, "peak_rss_mib"),
        "peak_rss_mib_baseline": med(baseline, "peak_rss_mib"),
        "train_rss_mib_ours": med(ours, "peak_rss_mib") - med(ours, "rss_start_mib"),
        "train_rss_mib_baseline": med(baseline, "peak_rss_mib") - med(baseline, "rss_start_mib"),
        "threads_ours": ours[0]["threads"],
        "threads_baseline": baseline[0]["threads"],
        "interop_threads_ours": ours[0]["interop_threads"],
        "deterministic_ours": ours[0]["deterministic"],
        "last_loss_ours": ours[0]["last_loss"],
        "last_loss_baseline": baseline[0]["last_loss"],
        "load1_range": [
            min(r["load1_before"] for r in ours + baseline),
            max(r["load1_after"] for r in ours + baseline),
        ],
        "others_cpu_share_max": max(r.get("others_cpu_share", 0.0) for r in ours + baseline),
        "own_cpu_per_wall_ours": med(ours, "own_cpu_per_wall"),
        "own_cpu_per_wall_baseline": med(baseline, "own_cpu_per_wall"),
        "reps": len(ours),
    }
    if "cuda_peak_mib" in ours[0]:
        entry["cuda_peak_mib_ours"] = med(ours, "cuda_peak_mib")
        entry["cuda_peak_mib_baseline"] = med(baseline, "cuda_peak_mib")
    if any(r.get("worker_peak_rss_mib") for r in baseline):
        entry["worker_peak_rss_mib_baseline"] = med(baseline, "worker_peak_rss_mib")
    entry.update(extra)
    return entry


def images_for(method: str, args: argparse.Namespace) -> int:
    return args.gfe_images if method == "gfe" else args.images


def base_opts(method: str, args: argparse.Namespace, data_path: Path) -> dict[str, Any]:
    return {
        "method": method,
        "device": args.device,
        "data": str(data_path),
        "params": str(args.params),
        "images": images_for(method, args),
        "warmup": args.warmup,
        "seed": args.seed,
        "workers": args.gfe_workers if method == "gfe" else 0,
    }


def run_table(args: argparse.Namespace, data_path: Path) -> list[dict[str, Any]]:
    entries = []
    for method in args.methods:
        base = base_opts(method, args, data_path)
        ours_opts = base | {
            "variant": "ours",
            "threads": args.threads,
            # configure_torch enforces it on CPU (fit and pipelines/efficiency.py alike)
            "deterministic": True,
        }
        variants = {
            "baseline": base | {"variant": "baseline", "threads": args.baseline_threads},
            "ours": ours_opts,
        }
        if method in ("gon", "ae") and not args.no_fit:
            variants["fit"] = ours_opts | {"variant": "fit"}
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
        for rep in range(args.reps):
            for key, opts in variants.items():
                r = spawn(opts)
                results[key].append(r)
                print(
                    f"{method} {key:8s} rep {rep + 1}: {r['seconds']:.3f} s "
                    f"({r['steps_per_s']:.2f} steps/s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                    f"threads {r['threads']}, load {r['load1_before']:.2f}, "
                    f"others {r.get('others_cpu_share', float('nan')):.0%} of the CPUs)",
                    flush=True,
                )
        n = results["ours"][0]["images"]
        batch = n // results["ours"][0]["steps"]
        unit = f"s per epoch ({n:,} images, batch {batch})"
        if method == "gfe":
            unit = (
                f"s per {n:,} images (batch {batch}, drawn from the first {args.gfe_pool} images)"
            )
        extra: dict[str, Any] = {"images": n, "batch": batch, "device_name": args.device_name}
        if "fit" in results:
            extra["fit_epoch_s"] = med(results["fit"], "seconds")
            extra["fit_epoch_s_all"] = [r["seconds"] for r in results["fit"]]
            extra["ratio_fit"] = extra["fit_epoch_s"] and (
                med(results["baseline"], "seconds") / extra["fit_epoch_s"]
            )
            extra["peak_rss_mib_fit"] = med(results["fit"], "peak_rss_mib")
        if method == "gfe":
            extra["baseline_loader_workers"] = args.gfe_workers
            extra["nfe_ours"] = [r["nfe"] for r in results["ours"]]
            extra["nfe_baseline"] = [r["nfe"] for r in results["baseline"]]
        entries.append(
            summarise(
                f"{method}_epoch",
                args.device,
                unit,
                results["ours"],
                results["baseline"],
                extra,
            )
        )
    return entries


def run_experiments(args: argparse.Namespace, data_path: Path) -> list[dict[str, Any]]:
    """Option sweeps of ours (and the baseline's thread count), each against the first entry."""
    out = []
    for method in args.methods:
        for group in args.experiments:
            configs = EXPERIMENTS[group]
            base = base_opts(method, args, data_path) | {"deterministic": True}
            results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in configs}
            for rep in range(args.reps):
                for label, opts in configs:
                    o = base | opts
                    if o["variant"] == "baseline":
                        o["deterministic"] = False  # GON.py sets no flags
                    try:
                        r = spawn(o)
                    except RuntimeError as err:
                        print(f"{method} {label}: FAILED\n{err}", flush=True)
                        results[label].append({"error": str(err)[-1500:]})
                        continue
                    results[label].append(r)
                    print(
                        f"{method} {label:45s} rep {rep + 1}: {r['seconds']:.3f} s "
                        f"(load {r['load1_before']:.2f}, "
                        f"others {r.get('others_cpu_share', float('nan')):.0%} of the CPUs)",
                        flush=True,
                    )
            ref_label = configs[0][0]
            ref = med([r for r in results[ref_label] if "seconds" in r], "seconds")
            for label, opts in configs:
                ok = [r for r in results[label] if "seconds" in r]
                suffix = f" [{args.contend} busy process(es)]" if args.contend else ""
                entry: dict[str, Any] = {
                    "name": f"{method} [{group}] {label}{suffix}",
                    "device": args.device,
                    "group": group,
                    "options": opts,
                    "busy_processes": args.contend,
                    "images": images_for(method, args),
                }
                if ok:
                    s = med(ok, "seconds")
                    entry |= {
                        "seconds": s,
                        "seconds_all": [r["seconds"] for r in ok],
                        "steps_per_s": med(ok, "steps_per_s"),
                        "peak_rss_mib": med(ok, "peak_rss_mib"),
                        "speedup_vs": f"{method} [{group}] {ref_label}{suffix}",
                        "speedup": ref / s,
                        "last_loss": ok[0]["last_loss"],
                        "load1_range": [
                            min(r["load1_before"] for r in ok),
                            max(r["load1_after"] for r in ok),
                        ],
                        "others_cpu_share_max": max(r.get("others_cpu_share", 0.0) for r in ok),
                    }
                errors = [r["error"] for r in results[label] if "error" in r]
                if errors:
                    entry["error"] = errors[0]
                out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# torch.compile check
# --------------------------------------------------------------------------------------------


def compile_check(opts: dict[str, Any]) -> dict[str, Any]:
    """Apply torch.compile to one GON and one AE step; record what happens (errors verbatim)."""
    device = torch.device(opts["device"])
    configure(opts, device)
    params = load_params(Path(opts["params"]))
    blob = torch.load(opts["data"], weights_only=True)
    x = blob["images32"][:64].to(device).float().div_(255.0)  # one real batch
    findings: dict[str, Any] = {}

    def attempt(label: str, method: str, make_step: Callable) -> None:
        setting = setting_for(method, params)
        torch.manual_seed(0)
        model = setting.make_model().to(device)
        opt = setting.make_optimizer(model)
        record: dict[str, Any] = {"method": method}
        try:
            step = make_step(setting, model, opt)
            t0 = time.perf_counter()
            record["first_loss"] = float(step(x))
            sync(device)
            record["first_step_s"] = time.perf_counter() - t0
            for _ in range(3):
                step(x)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(opts["compile_steps"]):
                step(x)
            sync(device)
            record["ms_per_step"] = (time.perf_counter() - t0) / opts["compile_steps"] * 1e3
            record["status"] = "ok"
        except Exception as err:  # the finding is the error itself
            record["status"] = "error"
            record["error_type"] = f"{type(err).__module__}.{type(err).__name__}"
            record["error"] = machine_free(str(err).strip())[:1500]
            tail = traceback.format_exc().strip().splitlines()[-6:]
            record["traceback_tail"] = [machine_free(line) for line in tail]
        findings[label] = record
        print(label, json.dumps(record, indent=1)[:2000], file=sys.stderr, flush=True)

    def eager(setting, model, opt):
        def step(x):
            loss = ours_loss(setting, model, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return step

    def func_step(compile_it: bool):
        """GON written with torch.func: the inner gradient is part of the traced forward."""
        from torch.func import functional_call, grad

        from repro.encoders import gon_training_loss, sse_per_image

        def make(setting, model, opt):
            dec, enc = model.decoder, model.encoder
            p, b = dict(dec.named_parameters()), dict(dec.named_buffers())

            def inner(p, b, z, x):
                pixels = x.shape[-1] * x.shape[-2]
                return sse_per_image(functional_call(dec, (p, b), (z,)), x).sum() / (
                    enc.inner_norm * pixels
                )

            def loss_fn(p, b, x):
                z0 = torch.zeros(x.shape[0], enc.nz, 1, 1, device=x.device, dtype=x.dtype)
                z = z0 - enc.step_size * grad(inner, argnums=2)(p, b, z0, x)
                return gon_training_loss(functional_call(dec, (p, b), (z,)), x)

            fn = torch.compile(loss_fn) if compile_it else loss_fn

            def step(x):
                loss = fn(p, b, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss

            return step

        return make

    def whole_loss(setting, model, opt):
        return compiled_step(setting, model, opt, "step")

    def decoder_only(setting, model, opt):
        model.decoder = torch.compile(model.decoder)
        return eager(setting, model, opt)

    def fullgraph(setting, model, opt):
        compiled = torch.compile(lambda x: ours_loss(setting, model, x), fullgraph=True)

        def step(x):
            loss = compiled(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return step

    from torch import _dynamo

    for method in ("gon", "ae"):
        attempt(f"{method}: eager", method, eager)
        _dynamo.reset()
        attempt(f"{method}: compile(forward+loss)", method, whole_loss)
        _dynamo.reset()
        attempt(f"{method}: compile(forward+loss, fullgraph=True)", method, fullgraph)
        _dynamo.reset()
        attempt(f"{method}: compile(decoder module)", method, decoder_only)
        _dynamo.reset()
    attempt("gon: torch.func formulation, eager", "gon", func_step(False))
    attempt("gon: torch.func formulation, compile", "gon", func_step(True))
    _dynamo.reset()
    ref = findings["gon: eager"].get("first_loss")
    for label, record in findings.items():
        if label.startswith("gon") and "first_loss" in record and ref:
            record["first_loss_rel_diff_vs_eager"] = abs(record["first_loss"] - ref) / ref
    # Why the compiled GON loss differs: D(0) in train-mode BatchNorm normalises a constant.
    setting = setting_for("gon", params)
    torch.manual_seed(0)
    dec = setting.make_model().decoder.to(device).train()
    compiled = torch.compile(dec)
    with torch.no_grad():
        z0 = torch.zeros(64, setting.nz, 1, 1, device=device)
        z1 = torch.randn(64, setting.nz, 1, 1, device=device)
        findings["gon: decoder eager vs compiled, train-mode BN"] = {
            "max_abs_diff_at_origin": float((dec(z0) - compiled(z0)).abs().max()),
            "max_abs_diff_at_random_z": float((dec(z1) - compiled(z1)).abs().max()),
        }
    _dynamo.reset()
    return findings


# --------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------


def phase_breakdown(
    setting: Setting,
    params,
    blob: dict[str, torch.Tensor],
    device: torch.device,
    steps: int,
    variant: str,
) -> dict[str, float]:
    """Mean milliseconds per GON step spent in each phase (perf_counter, synchronised)."""
    from repro.encoders import gon_training_loss
    from repro.train import to_unit_float

    torch.manual_seed(0)
    model = setting.make_model().to(device)
    opt = setting.make_optimizer(model)
    enc, dec = model.encoder, model.decoder
    n = blob["images32"].shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    b = setting.batch
    totals = dict.fromkeys(PHASES, 0.0)
    if variant == "baseline":
        loader = make_loader(
            make_pil_dataset(blob["images28"], blob["labels"], blob["images32"].shape[-1]),
            b,
            order,
            0,
        )

        def cycle(loader=loader):  # GON.py's endless iterator over its DataLoader
            while True:
                yield from loader

        batches = cycle()
    else:
        data, dev_order = blob["images32"].to(device), order.to(device)
    model.train()
    warm = 5
    for step in range(steps + warm):
        marks = [time.perf_counter()]

        def mark(marks: list[float] = marks) -> None:
            sync(device)
            marks.append(time.perf_counter())

        if variant == "baseline":
            x, t = next(batches)
            x, t = x.to(device), t.to(device)
            mark()
            z = torch.zeros(x.shape[0], setting.nz, 1, 1).to(device).requires_grad_()
            inner = ((dec(z) - x) ** 2).sum(1).mean()
            mark()
            grad = torch.autograd.grad(inner, [z], create_graph=True, retain_graph=True)[0]
            z = -grad
            mark()
            loss = ((dec(z) - x) ** 2).sum(1).mean()
            mark()
            opt.zero_grad()
            loss.backward()
            mark()
        else:
            i = step % (n // b)
            x = to_unit_float(data[dev_order[i * b : (i + 1) * b]])
            mark()
            z0 = torch.zeros(x.shape[0], enc.nz, 1, 1, device=device, requires_grad=True)
            inner = enc.inner_loss(dec, z0, x)
            mark()
            (grad,) = torch.autograd.grad(inner, z0, create_graph=True)
            z = z0 - enc.step_size * grad
            mark()
            loss = gon_training_loss(dec(z), x)
            mark()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            mark()
        opt.step()
        mark()
        if step >= warm:
            for phase, a, c in zip(PHASES, marks[:-1], marks[1:], strict=True):
                totals[phase] += c - a
    out = {p: v / steps * 1e3 for p, v in totals.items()}
    out["total"] = sum(out.values())
    return out


def eval_costs(params, blob, device: torch.device, images: int) -> dict[str, dict[str, float]]:
    """Seconds to score ``images`` validation images: the library's evaluation vs wasteful ones.

    ``library``: :func:`repro.evaluate.mean_mse_per_pixel` as ``fit`` scores the curves (a frozen
    copy, ``no_grad``; the GON latent's inner gradient is taken without ``create_graph``).
    ``graph``: the training forward with grad enabled (``create_graph=True``, parameters
    requiring grad), the graph thrown away. ``inference_mode`` (AE only: GON needs autograd for
    its latent): the training-mode forward under ``torch.inference_mode``.
    """
    from repro.encoders import sse_per_image
    from repro.evaluate import mean_mse_per_pixel
    from repro.train import to_unit_float

    x_all = blob["images32"][:images].to(device)
    b = params.evaluate.batch_size
    out: dict[str, dict[str, float]] = {}
    for method in ("gon", "ae"):
        setting = setting_for(method, params)
        torch.manual_seed(0)
        model = setting.make_model().to(device)

        def timed(fn: Callable[[], Any]) -> float:
            fn()  # warm-up
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            return time.perf_counter() - t0

        def graph(model: torch.nn.Module = model) -> None:
            model.train()
            for s in range(0, len(x_all), b):
                x = to_unit_float(x_all[s : s + b])
                sse_per_image(model(x)[1], x).sum().item()

        def inference(model: torch.nn.Module = model) -> None:
            model.train()
            with torch.inference_mode():
                for s in range(0, len(x_all), b):
                    x = to_unit_float(x_all[s : s + b])
                    sse_per_image(model(x)[1], x).sum().item()

        row = {
            "library": timed(
                lambda model=model: mean_mse_per_pixel(
                    model, x_all, batch_size=b, bn_mode=params.evaluate.headline_bn
                )
            ),
            "graph": timed(graph),
        }
        if method == "ae":
            row["inference_mode"] = timed(inference)
        out[method] = row
    return out


def profile(opts: dict[str, Any]) -> dict[str, Any]:
    """torch.profiler over ~20 steps of ours (GON) and the per-phase breakdown of both loops."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = torch.device(opts["device"])
    configure(opts, device)
    blob = torch.load(opts["data"], weights_only=True)
    params = load_params(Path(opts["params"]))
    setting = setting_for("gon", params)
    torch.manual_seed(0)
    model = setting.make_model().to(device)
    opt = setting.make_optimizer(model)
    data = blob["images32"].to(device)
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0)).to(device)
    run_ours(setting, model, opt, data, order, 5)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = opts["profile_steps"]
    with torch_profile(activities=activities) as prof:
        run_ours(setting, model, opt, data, order, steps)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=opts["top"])
    print(f"== torch.profiler: ours, GON, {steps} steps, sorted by {sort} ==")
    print(table)
    top = []
    for evt in sorted(prof.key_averages(), key=lambda e: getattr(e, sort), reverse=True)[
        : opts["top"]
    ]:
        row = {
            "op": evt.key,
            "calls_per_step": evt.count / steps,
            "self_cpu_ms_per_step": evt.self_cpu_time_total / 1e3 / steps,
        }
        if device.type == "cuda":
            row["self_device_ms_per_step"] = evt.self_device_time_total / 1e3 / steps
        top.append(row)
    total_self = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3 / steps
    breakdown = {
        v: phase_breakdown(setting, params, blob, device, opts["phase_steps"], v)
        for v in ("ours", "baseline")
    }
    evals = eval_costs(params, blob, device, opts["eval_images"])
    print(f"\n== seconds to score {opts['eval_images']} validation images ==")
    for method, row in evals.items():
        print(method, ", ".join(f"{k} {v:.3f} s" for k, v in row.items()))
    print(f"\n== per-phase milliseconds per GON step (mean of {opts['phase_steps']} steps) ==")
    print(f"{'phase':16s} {'ours':>9s} {'baseline':>9s}")
    for phase in (*PHASES, "total"):
        print(f"{phase:16s} {breakdown['ours'][phase]:9.2f} {breakdown['baseline'][phase]:9.2f}")
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "profile_steps": steps,
        "profiled_self_cpu_ms_per_step": total_self,
        "top_ops": top,
        "top_ops_sorted_by": sort,
        "phases_ms_per_step": breakdown,
        "eval_seconds": evals,
        "eval_images": opts["eval_images"],
    }


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def merge_entries(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with every (name, device) that ``new`` has replaced by the new entry."""
    keys = {(e["name"], e["device"]) for e in new}
    return [e for e in old if (e.get("name"), e.get("device")) not in keys] + list(new)


def merge_report(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into the JSON at ``path`` (if any) and write it.

    Lists of entries (``benchmarks``, ``experiments``) merge by (name, device); dicts keyed by
    device (``compile``, ``profile``) merge by key; other top-level fields are replaced.
    """
    doc: dict[str, Any] = {}
    if path.is_file():
        doc = json.loads(path.read_text())
    for key, value in update.items():
        if key in ("benchmarks", "experiments"):
            doc[key] = merge_entries(doc.get(key, []), value)
        elif key in ("compile", "profile"):
            doc[key] = doc.get(key, {}) | value
        else:
            doc[key] = value
    from repro.io import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)
    return doc


def print_table(entries: list[dict[str, Any]]) -> None:
    head = (
        f"{'benchmark':12s} {'device':6s} {'ours s':>8s} {'base s':>8s} {'ratio':>6s} "
        f"{'ours st/s':>9s} {'base st/s':>9s} {'fit s':>7s} {'RSS ours':>9s} {'RSS base':>9s} "
        f"{'thr o/b':>7s}"
    )
    print(head)
    for e in entries:
        fit = e.get("fit_epoch_s")
        print(
            f"{e['name']:12s} {e['device']:6s} {e['ours']:8.3f} {e['baseline']:8.3f} "
            f"{e['ratio']:6.2f} {e['steps_per_s_ours']:9.2f} {e['steps_per_s_baseline']:9.2f} "
            f"{(f'{fit:7.3f}' if fit else '      -')} {e['peak_rss_mib_ours']:9.0f} "
            f"{e['peak_rss_mib_baseline']:9.0f} {e['threads_ours']:>3d}/{e['threads_baseline']:<3d}"
        )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--methods", default="gon,ae,gfe", help="comma list of gon, ae, gfe")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--images", type=int, default=6400, help="images per timed GON/AE epoch")
    ap.add_argument("--gfe-images", type=int, default=480, help="images per timed GFE run")
    ap.add_argument("--gfe-workers", type=int, default=2, help="baseline GFE DataLoader workers")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed epoch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ours: torch intra-op threads (default: train.num_threads of params.yaml, as fit)",
    )
    ap.add_argument(
        "--baseline-threads", type=int, default=0, help="baseline threads (0: torch default)"
    )
    ap.add_argument("--no-fit", action="store_true", help="skip the repro.train.fit variant")
    ap.add_argument("--experiments", default="", help=f"comma list of {list(EXPERIMENTS)}")
    ap.add_argument(
        "--contend",
        type=int,
        default=0,
        help="--experiments: run N busy-looping processes alongside (a shared machine)",
    )
    ap.add_argument("--compile-check", action="store_true")
    ap.add_argument("--compile-steps", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--phase-steps", type=int, default=60)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--eval-images", type=int, default=1000, help="--profile: images scored")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        opts = json.loads(args.child)
        kind = opts.get("kind", "measure")
        result = {"measure": measure, "compile": compile_check, "profile": profile}[kind](opts)
        print(json.dumps(result))
        return

    args.methods = [m for m in args.methods.split(",") if m]
    args.experiments = [e for e in args.experiments.split(",") if e]
    for m in args.methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; allowed: {list(METHODS)}")
    for e in args.experiments:
        if e not in EXPERIMENTS:
            ap.error(f"unknown experiment group {e!r}; allowed: {list(EXPERIMENTS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    params = load_params(args.params)
    if args.threads is None:
        args.threads = params.train.num_threads
    args.gfe_pool = max(params.efficiency.train_sizes)
    args.device_name = device_name(torch.device(args.device))
    n = max(args.images, args.gfe_pool)
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, torch {torch.__version__}")

    update: dict[str, Any] = {
        "machine": {
            "device_name": args.device_name,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "threads": {"torch_default": torch.get_num_threads(), "ours": args.threads},
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "bench_data.pt"
        torch.save(bench_data(args.dataset, args.data_dir, args.raw_dir, n), data_path)
        common = {"device": args.device, "data": str(data_path), "params": str(args.params)}
        did = False
        if args.compile_check:
            opts = common | {"kind": "compile", "threads": 1, "compile_steps": args.compile_steps}
            update["compile"] = {args.device: spawn(opts, timeout=900)}
            print(json.dumps(update["compile"], indent=1))
            did = True
        if args.profile:
            opts = common | {
                "kind": "profile",
                "threads": args.threads,
                "deterministic": True,
                "profile_steps": args.profile_steps,
                "phase_steps": args.phase_steps,
                "eval_images": args.eval_images,
                "top": args.top,
            }
            proc = run_child(opts)
            print(proc.stdout.strip().rsplit("\n", 1)[0])
            update["profile"] = {args.device: json.loads(proc.stdout.strip().splitlines()[-1])}
            did = True
        if args.experiments:
            hogs = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.contend)
            ]
            try:
                update["experiments"] = run_experiments(args, data_path)
            finally:
                for hog in hogs:
                    hog.terminate()
                    hog.wait()
            for e in update["experiments"]:
                if "seconds" in e:
                    print(
                        f"{e['name']:55s} {e['seconds']:8.3f} s  speed-up {e['speedup']:.2f}  "
                        f"(vs {e['speedup_vs']})"
                    )
                else:
                    print(f"{e['name']:55s} FAILED: {e.get('error', '')[-300:]}")
            did = True
        if not did:
            update["benchmarks"] = run_table(args, data_path)
            print_table(update["benchmarks"])
    merge_report(out, update)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
