"""The fixed-shape training step captured once as a CUDA graph and replayed every step.

Why: the GON decoder has about 74k parameters, so a training step on a GPU is a few hundred
tiny kernels (forward at the origin, the inner gradient with ``create_graph=True``, the second
forward, the double backward, Adam), and the GPU waits on Python to launch each one. A CUDA
graph records the launches once and replays them with one call, so the step costs what its
arithmetic costs. ``torch.compile`` cannot do this for GON: its AOTAutograd backend does not
support the double backward through the inner gradient.

The captured step is :func:`repro.step.training_step`, the eager step of :func:`repro.train.fit`
(same ops, same order). Capture needs warm-up iterations on a side stream; they would move the weights, so
the model's state is saved before and restored after, in place (the graph holds the tensors'
addresses). The optimiser's state is restored in place too, never reloaded: Adam creates its
state (step count and moments, zero-filled) on its first step, and a state created *inside* the
capture would be re-created, zeros included, on every replay, so every replayed step would be
Adam's first. The warm-up creates it outside; :func:`_restore` then copies the saved values into
those tensors, or zeroes them where there was no state yet (a fresh Adam at step 0, which is
what an empty state means). Adam must be ``capturable=True`` (its step count lives on the device).

Opt-in (``train.cuda_graphs``) and GPU-only; it has not yet run on real hardware in this
project; ``tests/test_gpu.py`` checks it against the eager step on a GPU, and
``tests/test_train.py`` checks :func:`_restore` on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from repro.encoders import gon_training_loss
from repro.step import training_step


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, model_state, opt_state) -> None:
    """Put back weights, buffers and optimiser state in place (same tensors, same addresses).

    ``opt_state`` is ``optimizer.state_dict()`` from before the warm-up: a parameter with no
    entry there had no state yet, and its state tensors are zeroed (Adam at step 0).
    """
    with torch.no_grad():
        for name, t in model.state_dict().items():
            t.copy_(model_state[name])
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for index, p in enumerate(params):
            saved = opt_state["state"].get(index)
            for key, t in optimizer.state[p].items():
                if not torch.is_tensor(t):
                    continue
                if saved is None:
                    t.zero_()
                else:
                    t.copy_(saved[key])


def graphed_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_shape: torch.Size,
    *,
    warmup: int = 3,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Capture ``loss = gon_training_loss(model(x)); backward; optimizer.step()`` as a graph.

    Returns ``step(x) -> loss``: copies ``x`` into the graph's input buffer, replays, and returns
    the graph's loss tensor (on the device; read it without a per-step host sync).
    """
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError("train.cuda_graphs needs a CUDA device; set it to false on CPU")
    if not optimizer.defaults.get("capturable", False):
        raise ValueError("CUDA graph capture needs the optimiser built with capturable=True")
    static_x = torch.zeros(batch_shape, device=device)
    model_state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict())

    def eager() -> torch.Tensor:  # the eager step itself, grads zeroed in place (capturable)
        return training_step(model, optimizer, static_x, gon_training_loss, set_to_none=False)

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            eager()
    torch.cuda.current_stream(device).wait_stream(side)
    _restore(model, optimizer, model_state, opt_state)
    optimizer.zero_grad(set_to_none=False)  # grads must exist (and be zero) before capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = eager()
    # Capture records but does not run the step: the weights are still the restored ones.

    def step(x: torch.Tensor) -> torch.Tensor:
        static_x.copy_(x)
        graph.replay()
        return static_loss

    return step
