"""Train several models of the same shape together: one vmapped step for N seeds.

An ablation cell is the same model trained from several seeds. Instead of N trainings one after
the other, the N models' tensors are stacked (:func:`torch.func.stack_module_state`), one
training step is :func:`torch.func.vmap`-ped over the stack, each model computing its loss on
*its own* batch, and one Adam updates the stacked tensors. The result equals N separate
:func:`repro.train.fit` trainings with the same seeds, up to float rounding (see below).

**What batches.** "Same shape" means the same function with different numbers in it: the same
method (``gon``, ``ae``, ``ae_linear``), architecture, ``nz``, ``ngf``, channels, *activation*,
and the same GON inner-loop settings (steps, step size, ``inner_norm``). Seeds batch; so does
anything that only changes the *values* of parameters or data. Models with different activation
functions are different functions, so they cannot share one vmapped call (unless the activation
were itself a parameter, which it is not here): an activation ablation is one stacked run per
activation. The optimiser settings (``lr``, ``betas``) are shared by the one Adam, so they must
agree too. :func:`check_same_shape` refuses anything else with the first difference it finds.
The GFE encoders (adaptive ODE solvers with data-dependent control flow) are not supported.

**The pieces, and why they are equal to separate trainings.**

* *Initialisation*: :func:`seeded_models` calls ``torch.manual_seed(seed)`` before building each
  model, as ``fit`` does.
* *Data order*: every model has its own ``torch.Generator().manual_seed(seed)`` and draws
  ``torch.randperm(n, generator=…)`` once per epoch, as ``fit`` does; batch ``s`` of model ``i``
  is ``order_i[s·B:(s+1)·B]`` and the last incomplete batch is dropped (:func:`together_batches`).
* *GON step*: the inner gradient is :func:`torch.func.grad` (``torch.autograd.grad`` cannot run
  under vmap). Taken inside the outer autograd graph, it is differentiable, so the outer
  backward is second order exactly as with ``create_graph=True``. The loss is
  :func:`repro.encoders.gon_training_loss` and the inner loss the encoder's own ``inner_loss``.
* *Gradients*: the step back-propagates the *sum* of the N losses; model ``i``'s tensors only
  enter loss ``i``, so each slice of the stacked gradient is that model's own gradient.
* *Adam* is elementwise (its state, the moments, has the shape of the parameter; the step count
  is shared and equal for all models), so one Adam over the stacked tensors performs N
  independent Adams; ``tests/test_batched.py`` checks this bitwise.
* *BatchNorm running statistics*: training-mode BatchNorm normalises with batch statistics and
  updates ``running_mean``/``running_var``/``num_batches_tracked`` in place. Passing the stacked
  buffers to :func:`torch.func.functional_call` *inside* the vmapped function makes the buffers
  batched tensors; PyTorch's batching rule for ``batch_norm`` then updates each model's slice in
  place with the usual formula (momentum 0.1, unbiased variance for ``running_var``), also
  inside the :func:`torch.func.grad` of the GON inner step. A GON training step calls the
  decoder ``steps + 1`` times (inner pass(es) and the outer pass) and the stacked buffers see
  exactly those ``steps + 1`` updates, as in ``fit``. (An in-place update of an *unbatched*
  buffer from a batched input is what vmap refuses; stacking the buffers avoids it.)

**Tolerance.** The stacked step is the same computation as N separate steps, but not the same
sequence of float operations: vmapped convolutions run as grouped convolutions, with another
summation order. In float64 (``tests/test_batched.py``) every tensor agrees with separate
trainings to 1e-11 (AE) and 1e-8 (GON) absolute after 5 steps, the per-step losses to 1e-11
relative: the algorithm is exact. In float32 two effects magnify rounding, both properties of
these models rather than of batching, and both present when ``fit`` merely changes its thread
count:

* Adam amplifies noise-sized gradients. A convolution bias feeding a BatchNorm has zero
  gradient in exact arithmetic (BatchNorm subtracts the batch mean); its float gradient is
  rounding noise, which Adam's normalised step turns into moves of up to ``lr`` per step in a
  random direction. These biases, and the ``running_mean`` that absorbs them, can differ by up
  to about ``2·lr·steps`` between any two float32 runs; they do not change the output in
  batch-statistics mode.
* GON's inner pass feeds the first BatchNorm a batch-constant input (``z₀ = 0``), zero variance,
  whose backward pass scales by ``1/√eps``.

Measured on CPU over 4–16 float32 steps (lr 1e-4): the first step's loss agrees to 2e-7;
later per-step losses to 2e-7 (AE) and up to 7e-4 (GON) relative; AE parameters other than
those biases to 3e-4·lr·steps; GON parameters to about 0.3·lr·steps and running variances to
0.8·lr·steps; the validation loss of the trained models, in both BatchNorm modes, to 1e-4.
``fit`` on 1 thread against ``fit`` on 2 threads differs by the same orders (GON's per-step
losses, for one, by the same 7e-4). ``tests/test_batched.py`` checks float64 tightly and
float32 against ``fit`` itself with bounds just above these. Stacked runs are
bitwise reproducible among themselves (same N, device and thread count).

Not done here: ``fit``'s checkpoints, validation curves, history files and divergence guard;
:class:`StackedTrainer` is the training core, and the caller writes whatever it needs from
:meth:`StackedTrainer.state_dicts` (ordinary ``state_dict``\\ s, loadable into the N models).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from repro.config import Params, RunSpec
from repro.encoders import (
    AmortisedEncoder,
    GradientOriginEncoder,
    LatentModel,
    gon_training_loss,
)
from repro.train_run import build_run_model, to_unit_float

Tensors = dict[str, torch.Tensor]

_SUPPORTED_ENCODERS = (GradientOriginEncoder, AmortisedEncoder)


def _encoder_settings(model: LatentModel) -> dict[str, Any]:
    """The encoder's numbers that enter the forward function as constants (not as tensors)."""
    enc = model.encoder
    if not isinstance(enc, _SUPPORTED_ENCODERS):
        raise ValueError(
            f"batched training supports the gon, ae and ae_linear methods; "
            f"got encoder {type(enc).__name__}"
        )
    if isinstance(enc, GradientOriginEncoder):
        step = enc.step_size if isinstance(enc.step_size, float) else "learned"
        return {"nz": enc.nz, "steps": enc.steps, "inner_norm": enc.inner_norm, "step_size": step}
    return {}


def architecture_signature(model: LatentModel) -> dict[str, Any]:
    """What two models must share to be trained together in one vmapped call.

    The module tree (its ``repr`` names every layer, its shapes and the activation), the name,
    shape, dtype, device and ``requires_grad`` of every parameter and buffer, and the GON
    encoder's settings.
    """
    return {
        "modules": repr(model),
        "parameters": [
            (k, tuple(v.shape), v.dtype, v.device, v.requires_grad)
            for k, v in model.named_parameters()
        ],
        "buffers": [(k, tuple(v.shape), v.dtype, v.device) for k, v in model.named_buffers()],
        "encoder": _encoder_settings(model),
    }


def check_same_shape(models: Sequence[LatentModel]) -> None:
    """Raise ``ValueError`` naming the first difference unless all models can be stacked."""
    if not models:
        raise ValueError("need at least one model to train")
    ref = architecture_signature(models[0])
    for i, model in enumerate(models[1:], start=1):
        sig = architecture_signature(model)
        for key, value in ref.items():
            if sig[key] != value:
                detail = _first_difference(value, sig[key])
                raise ValueError(
                    f"models 0 and {i} differ in {key} ({detail}); only models of the same "
                    f"architecture, activation and method settings can be trained together"
                )


def _first_difference(a: Any, b: Any) -> str:
    if isinstance(a, str) and isinstance(b, str):
        la, lb = a.splitlines(), b.splitlines()
        for x, y in zip(la, lb, strict=False):
            if x != y:
                return f"{x.strip()!r} vs {y.strip()!r}"
        return f"{len(la)} vs {len(lb)} lines"
    if isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            if x != y:
                return f"{x} vs {y}"
        return f"{len(a)} vs {len(b)} entries"
    return f"{a} vs {b}"


def _sub(tensors: Tensors, prefix: str) -> Tensors:
    """The entries of a submodule, named relative to it."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


class StackedTrainer:
    """N same-shape models as stacked tensors, trained in lock-step with one Adam.

    ``models`` are copied, never modified; each must be in the state ``fit`` would start from.
    :meth:`step` takes one batch per model, shape (N, B, C, H, W), floats in [0, 1], and returns
    the N training losses (the values ``fit`` would compute). :meth:`state_dicts` gives back N
    ordinary ``state_dict``\\ s (parameters and BatchNorm running statistics).
    """

    def __init__(
        self,
        models: Sequence[LatentModel],
        *,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        check_same_shape(models)
        self.n_models = len(models)
        self.params, self.buffers = stack_module_state(list(models))
        # stack_module_state returns leaves that require grad exactly where the originals did.
        self.trainable = {k: v for k, v in self.params.items() if v.requires_grad}
        # A skeleton for functional_call: the structure and constants, no storage.
        self._base = copy.deepcopy(models[0]).to("meta").train()
        self._is_gon = isinstance(self._base.encoder, GradientOriginEncoder)
        self.optimizer = torch.optim.Adam(list(self.trainable.values()), lr=lr, betas=betas)

    # --- one model, as a pure function of its tensors (vmapped over the stack) -----------------

    def _decode(self, dec_p: Tensors, dec_b: Tensors, z: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base.decoder, (dec_p, dec_b), (z,))

    def _gon_latent(
        self, dec_p: Tensors, dec_b: Tensors, step_size: Any, x: torch.Tensor
    ) -> torch.Tensor:
        """GON's latent, as :meth:`GradientOriginEncoder.forward` with ``create_graph=True``.

        The buffers are an *argument* of the differentiated function: BatchNorm updates them in
        place, and :func:`torch.func.grad` refuses to mutate tensors captured from outside.
        """
        enc = self._base.encoder
        assert isinstance(enc, GradientOriginEncoder)

        def inner(z: torch.Tensor, dec_b: Tensors) -> torch.Tensor:
            decoder = functools.partial(self._decode, dec_p, dec_b)
            return enc.inner_loss(decoder, z, x)  # type: ignore[arg-type]

        z = torch.zeros(x.shape[0], enc.nz, 1, 1, device=x.device, dtype=x.dtype)
        for _ in range(enc.steps):
            z = z - step_size * grad(inner)(z, dec_b)
        return z

    def _one_loss(self, p: Tensors, b: Tensors, x: torch.Tensor) -> torch.Tensor:
        if self._is_gon:
            dec_p, dec_b = _sub(p, "decoder."), _sub(b, "decoder.")
            step_size = p.get("encoder.step_size", self._base.encoder.step_size)
            z = self._gon_latent(dec_p, dec_b, step_size, x)
            x_hat = self._decode(dec_p, dec_b, z)
        else:
            _, x_hat = functional_call(self._base, (p, b), (x,))
        return gon_training_loss(x_hat, x)

    # --- training ------------------------------------------------------------------------------

    def losses(self, x: torch.Tensor) -> torch.Tensor:
        """The N training losses on batches ``x`` (N, B, C, H, W), with the autograd graph.

        Updates the BatchNorm running statistics, as a training-mode forward pass does.
        """
        if x.shape[0] != self.n_models:
            raise ValueError(f"expected one batch per model ({self.n_models}), got {x.shape[0]}")
        return vmap(self._one_loss)(self.params, self.buffers, x)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One training step of every model on its own batch; returns the N losses (detached)."""
        losses = self.losses(x)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # slice i of each gradient comes from loss i only
        self.optimizer.step()
        return losses.detach()

    def state_dicts(self) -> list[Tensors]:
        """N ordinary ``state_dict``\\ s (copies), in the order of the models given."""
        keys = list(self._base.state_dict().keys())
        stacked = {**self.params, **self.buffers}
        return [{k: stacked[k][i].detach().clone() for k in keys} for i in range(self.n_models)]

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Load the trained tensors into ``models`` (N modules of the same architecture)."""
        if len(models) != self.n_models:
            raise ValueError(f"expected {self.n_models} models, got {len(models)}")
        for model, state in zip(models, self.state_dicts(), strict=True):
            model.load_state_dict(state)


def seeded_models(seeds: Sequence[int], build: Callable[[], LatentModel]) -> list[LatentModel]:
    """One model per seed, each built right after ``torch.manual_seed(seed)`` (as ``fit``)."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build().train())
    return models


def data_orders(seeds: Sequence[int]) -> list[torch.Generator]:
    """Each model's data-order generator, seeded as in ``fit``."""
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def together_batches(
    train_x: torch.Tensor, orders: Sequence[torch.Generator], batch_size: int
) -> Iterator[torch.Tensor]:
    """One epoch of stacked batches (N, B, C, H, W) in [0, 1]: model i in its own order.

    ``train_x`` is the uint8 training set (on the training device). Draws one permutation per
    generator, exactly as ``fit`` does at the start of an epoch; the last incomplete batch is
    dropped.
    """
    n = train_x.shape[0]
    perms = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(train_x.device)
    for s in range(n // batch_size):
        idx = perms[:, s * batch_size : (s + 1) * batch_size]
        yield to_unit_float(train_x[idx])


@dataclass
class TogetherResult:
    """What :func:`train_together` returns."""

    state_dicts: list[Tensors]
    step_losses: torch.Tensor  # (steps, N): every step's training loss of every model
    epoch_losses: torch.Tensor  # (epochs, N): the mean training loss per epoch, as in history.csv


def train_together(
    models: Sequence[LatentModel],
    train_x: torch.Tensor,
    seeds: Sequence[int],
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.999),
) -> TogetherResult:
    """Train ``models`` (built by :func:`seeded_models` with the same ``seeds``) together.

    The equivalent of calling ``fit`` once per seed on ``train_x`` (uint8, the first
    ``train.train_images`` images), without the files, validation and checkpoints.
    """
    if len(seeds) != len(models):
        raise ValueError(f"{len(models)} models but {len(seeds)} seeds")
    trainer = StackedTrainer(models, lr=lr, betas=betas)
    orders = data_orders(seeds)
    step_losses, epoch_losses = [], []
    for _ in range(epochs):
        losses = [trainer.step(x) for x in together_batches(train_x, orders, batch_size)]
        step_losses += losses
        epoch_losses.append(torch.stack(losses).mean(0))
    return TogetherResult(
        state_dicts=trainer.state_dicts(),
        step_losses=torch.stack(step_losses) if step_losses else torch.empty(0, len(models)),
        epoch_losses=torch.stack(epoch_losses) if epoch_losses else torch.empty(0, len(models)),
    )


def train_runs_together(
    specs: Sequence[RunSpec], params: Params, train_x: torch.Tensor
) -> TogetherResult:
    """Train the runs ``specs`` (the seeds of one cell) together with ``params.train`` settings.

    The specs must differ only in their seed. ``train_x`` is the uint8 training split; its first
    ``train.train_images`` images are used, as in ``fit``.
    """
    if len({(s.dataset, s.method, s.nz) for s in specs}) != 1:
        raise ValueError("runs trained together must be one or more that differ only in seed")
    cfg = params.train
    x = train_x[: cfg.train_images]

    def build() -> LatentModel:
        return build_run_model(specs[0], params, x.shape[1]).to(x.device)

    models = seeded_models([s.seed for s in specs], build)
    b1, b2 = cfg.betas
    return train_together(
        models,
        x,
        [s.seed for s in specs],
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        betas=(b1, b2),
    )
