"""Gradient Flow Encoding (GFE): a latent is the end point of a gradient flow on the loss.

docs/protocol.md §4 (Flouris et al., arXiv 2105.05031 / 2412.00864, code ``k-flouris/gfe``):

* **first-order flow** ``dz/dt = −α ∇_z ℓ(x, D(z))``, ``z(0) = 0``, integrated to ``t = τ`` by a
  torchdiffeq solver chosen by name (:data:`ODE_SOLVERS`);
* **second-order flow** ``v̈ + (3/t) v̇ + α ∇ℓ(v) = 0``, ``v(0) = v̇(0) = 0`` (the Su–Boyd–Candès ODE
  limit of Nesterov's method), solved as the first-order system ``dv/dt = m``,
  ``dm/dt = −3/(t + 1e-5)·m − α ∇ℓ(v)``;
* **adaptive "distance optimisation" step** (:func:`adaptive_step_flow`): explicit Euler whose
  step is accepted only if it decreases every sample's loss by a margin, otherwise halved.

ℓ is per sample (:data:`FLOW_LOSSES`) and summed over the batch before differentiating, so the
gradient of sample i depends on sample i alone: flows never couple samples. BatchNorm would
couple them through batch statistics, so the decoder's BatchNorm layers use their running
statistics during the flow (:func:`running_batchnorm`), the choice that makes an image's latent
independent of its batch mates; the outer decode is unaffected.

The decoder's training gradient can be taken three ways (:data:`GRAD_MODES`): ``backprop``
through the solver's operations, ``adjoint`` (``odeint_adjoint``: memory constant in the number
of steps, a second ODE solved backwards), or ``approximate``: ``z(τ)`` detached, the default of
the GFE code ("the costly integrals are not entirely necessary" is the claim under test).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from repro.errors import FlowError
from repro.names import FIXED_STEP_SOLVERS, FLOW_LOSSES, GRAD_MODES, ODE_SOLVERS, registry

# The solver, loss and gradient-mode names (and why torchdiffeq's Adams solvers are not among
# them) are in repro.names, which config validates against.


def _sse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_hat - x).pow(2).flatten(1).sum(1)


def _bce(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).mean(1)


#: Per-sample losses, keyed and ordered by :data:`repro.names.FLOW_LOSSES`.
FLOW_LOSS_REGISTRY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = registry(
    "flow loss", FLOW_LOSSES, {"sse": _sse, "bce": _bce}
)


def per_sample_loss(name: str, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ℓ for each sample, shape (B,).

    ``sse``: sum of squared errors over the image (GON's reduction). ``bce``: binary cross-entropy
    averaged over pixels (the GFE code's reduction), on decoder outputs in (0, 1).
    """
    if name not in FLOW_LOSS_REGISTRY:
        raise ValueError(f"unknown flow loss {name!r}; allowed: {list(FLOW_LOSSES)}")
    return FLOW_LOSS_REGISTRY[name](x_hat, x)


@contextlib.contextmanager
def running_batchnorm(module: nn.Module) -> Iterator[None]:
    """Put every BatchNorm layer in eval mode (running statistics) for the duration."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in bns]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(bns, modes, strict=True):
            m.train(mode)


@dataclass
class FlowStats:
    """What a solve cost: gradient evaluations, accepted/rejected steps, the time reached."""

    nfe: int = 0
    accepted: int = 0
    rejected: int = 0
    final_time: float = 0.0
    losses: list[float] = field(default_factory=list)  # mean ℓ after each accepted step (adaptive)

    def as_metrics(self) -> dict[str, float]:
        return {
            "flow_nfe": self.nfe,
            "flow_accepted": self.accepted,
            "flow_rejected": self.rejected,
            "flow_final_time": self.final_time,
        }


class LossGradient(nn.Module):
    """``z ↦ (ℓ(x, D(z)), ∇_z Σℓ)`` with an evaluation counter and a blow-up guard.

    An ``nn.Module`` holding the decoder, so that ``odeint_adjoint`` finds the decoder's
    parameters. Builds a graph through the gradient only when the caller has grad enabled
    (backprop through the solver, or the adjoint's backward pass).
    """

    def __init__(self, decoder: nn.Module, x: torch.Tensor, loss: str, max_nfe: int, where: str):
        super().__init__()
        self.decoder, self.x, self.loss, self.max_nfe, self.where = decoder, x, loss, max_nfe, where
        self.stats = FlowStats()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.stats.nfe += 1
        if self.stats.nfe > self.max_nfe:
            raise FlowError(
                f"{self.where}: more than {self.max_nfe} gradient evaluations (gfe.max_nfe); "
                "raise the cap, loosen the tolerances or shorten tau"
            )
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            zz = z if z.requires_grad else z.detach().requires_grad_(True)
            per_sample = per_sample_loss(self.loss, self.decoder(zz), self.x)
            (grad,) = torch.autograd.grad(per_sample.sum(), zz, create_graph=create_graph)
        if not torch.isfinite(grad).all():
            raise FlowError(f"{self.where}: non-finite gradient at evaluation {self.stats.nfe}")
        return per_sample if create_graph else per_sample.detach(), grad


class FirstOrderField(nn.Module):
    """``dz/dt = −α ∇_z ℓ``."""

    def __init__(self, lg: LossGradient, alpha: float):
        super().__init__()
        self.lg, self.alpha = lg, alpha

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -self.alpha * self.lg(z)[1]


class SecondOrderField(nn.Module):
    """``dv/dt = m``, ``dm/dt = −3/(t + 1e-5)·m − α ∇ℓ(v)`` (Nesterov's ODE)."""

    def __init__(self, lg: LossGradient, alpha: float):
        super().__init__()
        self.lg, self.alpha = lg, alpha

    def forward(
        self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        v, m = state
        return m, -3.0 / (t + 1e-5) * m - self.alpha * self.lg(v)[1]


def ode_flow(
    lg: LossGradient,
    z0: torch.Tensor,
    *,
    order: int,
    alpha: float,
    times: torch.Tensor,
    solver: str,
    rtol: float,
    atol: float,
    step_size: float | None,
    grad_mode: str,
) -> torch.Tensor:
    """Solve the first- or second-order flow; returns z at every time in ``times`` (T, B, ...)."""
    if solver not in ODE_SOLVERS:
        raise ValueError(
            f"unknown ODE solver {solver!r}; allowed: {list(ODE_SOLVERS)} (or 'adaptive_step')"
        )
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"unknown gradient mode {grad_mode!r}; allowed: {list(GRAD_MODES)}")
    field_ = FirstOrderField(lg, alpha) if order == 1 else SecondOrderField(lg, alpha)
    y0 = z0 if order == 1 else (z0, torch.zeros_like(z0))
    options = {"step_size": step_size} if solver in FIXED_STEP_SOLVERS else None
    kwargs = dict(rtol=rtol, atol=atol, method=solver, options=options)
    if grad_mode == "adjoint":
        ys = odeint_adjoint(
            field_, y0, times, adjoint_params=tuple(lg.decoder.parameters()), **kwargs
        )
    elif grad_mode == "approximate":
        with torch.no_grad():
            ys = odeint(field_, y0, times, **kwargs)
    else:
        ys = odeint(field_, y0, times, **kwargs)
    zs = ys if order == 1 else ys[0]
    if not torch.isfinite(zs).all():
        raise FlowError(
            f"{lg.where}: the flow produced a non-finite latent (solver {solver}, alpha {alpha})"
        )
    lg.stats.final_time = float(times[-1])
    return zs


def adaptive_step_flow(
    lg: LossGradient,
    z0: torch.Tensor,
    *,
    alpha: float,
    tau: float,
    h0: float = 1.0,
    h_max: float = 10.0,
    sigma: float = 1e-5,
    growth: float = 1.1,
    shrink: float = 0.5,
    h_min: float = 0.5**20,
    jump: float = 10.0,
    early_stop_fraction: float = 0.02,
    window: int = 5,
    slope_tol: float = 1e-5,
    on_accept: Callable[[int, float, torch.Tensor], None] | None = None,
    max_iterations: int | None = None,
) -> torch.Tensor:
    """The GFE code's "distance optimisation" step size, as a small solver (docs/protocol.md §4).

    Explicit Euler ``z₁ = z + h f(z)`` with ``f = −α∇ℓ``. The step is **accepted** iff for every
    sample ``ℓ(z) − ℓ(z₁) ≥ σ·h·h_max·‖f(z₁)‖²`` (a sufficient-decrease rule); then
    ``h ← min(growth·h, h_max)``. Otherwise ``h ← shrink·h`` and the step is retried; once
    ``h < h_min`` the step is accepted anyway and t jumps by ``jump`` (the flow is stuck on a
    stiff stretch). Stops at ``t ≥ τ``, or early once ``t ≥ early_stop_fraction·τ`` and the mean
    absolute change of the batch-mean loss over the last ``window`` accepted steps is below
    ``slope_tol`` (or after ``max_iterations`` accepted steps, when given). Gradients flow
    through the steps when grad is enabled (backprop mode). ``on_accept(nfe, t, per_sample_loss)``
    is called after every accepted step.
    """
    stats = lg.stats
    z, t, h = z0, 0.0, h0
    loss, grad = lg(z)
    recent: list[float] = [float(loss.mean())]
    while t < tau:
        f = -alpha * grad
        z1 = z + h * f
        loss1, grad1 = lg(z1)
        decrease = (loss - loss1).detach()
        needed = sigma * h * h_max * (alpha * grad1.detach()).flatten(1).pow(2).sum(1)
        if bool((decrease >= needed).all()):
            t += h
            h = min(growth * h, h_max)
        elif h < h_min:
            t += jump
        else:
            h *= shrink
            stats.rejected += 1
            continue
        stats.accepted += 1
        z, loss, grad = z1, loss1, grad1
        recent.append(float(loss.mean()))
        stats.losses.append(recent[-1])
        if on_accept is not None:
            on_accept(stats.nfe, t, loss.detach())
        if max_iterations is not None and stats.accepted >= max_iterations:
            break
        if t >= early_stop_fraction * tau and len(recent) > window:
            diffs = [
                abs(a - b) for a, b in zip(recent[-window - 1 : -1], recent[-window:], strict=True)
            ]
            if sum(diffs) / window < slope_tol:
                break
    if not torch.isfinite(z).all():
        raise FlowError(f"{lg.where}: the adaptive step produced a non-finite latent")
    stats.final_time = t
    return z


class GradientFlowEncoder(nn.Module):
    """A GFE latent finder for the registry in :mod:`repro.encoders`: ``(x, D) ↦ z(τ)``.

    ``flow`` is ``first_order`` or ``second_order`` (torchdiffeq, solver by name) or
    ``adaptive_step`` (:func:`adaptive_step_flow`). ``last_stats`` keeps the cost of the most
    recent encode for logging.
    """

    has_parameters = False

    def __init__(
        self,
        nz: int,
        *,
        flow: str = "first_order",
        loss: str = "bce",
        alpha: float = 1.0,
        tau: float = 1e4,
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float = 1.0,
        grad_mode: str = "approximate",
        max_nfe: int = 2000,
        adaptive: dict | None = None,
        where: str = "gfe",
    ):
        super().__init__()
        if flow not in ("first_order", "second_order", "adaptive_step"):
            raise ValueError(
                f"unknown flow {flow!r}; allowed: ['first_order', 'second_order', 'adaptive_step']"
            )
        if loss not in FLOW_LOSSES:
            raise ValueError(f"unknown flow loss {loss!r}; allowed: {list(FLOW_LOSSES)}")
        if grad_mode not in GRAD_MODES:
            raise ValueError(f"unknown gradient mode {grad_mode!r}; allowed: {list(GRAD_MODES)}")
        if flow == "adaptive_step" and grad_mode == "adjoint":
            raise ValueError(
                "the adjoint method needs an ODE solver; use flow first_order/second_order "
                "or grad_mode backprop/approximate with the adaptive step"
            )
        self.nz, self.flow, self.loss, self.alpha, self.tau = nz, flow, loss, alpha, tau
        self.solver, self.rtol, self.atol, self.step_size = solver, rtol, atol, step_size
        self.grad_mode, self.max_nfe, self.adaptive, self.where = (
            grad_mode,
            max_nfe,
            adaptive or {},
            where,
        )
        self.last_stats = FlowStats()

    def setting(self) -> str:
        """The solver setting in words, for error messages: what to change when a flow fails."""
        if self.flow == "adaptive_step":
            solver = "adaptive step " + ", ".join(
                f"{k}={v}" for k, v in sorted(self.adaptive.items())
            )
        else:
            solver = (
                f"{self.solver}, rtol={self.rtol}, atol={self.atol}, step_size={self.step_size}"
            )
        return f"{self.flow} flow, {solver}, tau={self.tau}, alpha={self.alpha}, max_nfe={self.max_nfe}"

    def forward(self, x: torch.Tensor, decoder: nn.Module, create_graph: bool) -> torch.Tensor:
        z0 = torch.zeros(x.shape[0], self.nz, 1, 1, device=x.device, dtype=x.dtype)
        lg = LossGradient(decoder, x, self.loss, self.max_nfe, f"{self.where} ({self.setting()})")
        # Without create_graph (evaluation) or in "approximate" mode no graph is built at all.
        mode = self.grad_mode if create_graph else "approximate"
        grad_ctx = torch.no_grad() if mode == "approximate" else contextlib.nullcontext()
        with running_batchnorm(decoder), grad_ctx:
            if self.flow == "adaptive_step":
                z = adaptive_step_flow(lg, z0, alpha=self.alpha, tau=self.tau, **self.adaptive)
            else:
                times = torch.tensor([0.0, self.tau], dtype=x.dtype, device=x.device)
                z = ode_flow(
                    lg,
                    z0,
                    order=1 if self.flow == "first_order" else 2,
                    alpha=self.alpha,
                    times=times,
                    solver=self.solver,
                    rtol=self.rtol,
                    atol=self.atol,
                    step_size=self.step_size,
                    grad_mode=mode,
                )[-1]
        self.last_stats = lg.stats
        return z if mode != "approximate" else z.detach()
