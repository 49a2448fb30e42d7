"""GFE flows against problems with a known exact answer (the torchdiffeq way of testing)."""

import pytest
import torch
from torch import nn

from repro.flows import (
    FIXED_STEP_SOLVERS,
    ODE_SOLVERS,
    FlowError,
    GradientFlowEncoder,
    LossGradient,
    adaptive_step_flow,
    ode_flow,
)


@pytest.fixture(autouse=True)
def float64():
    """Closed-form comparisons in double precision; restored afterwards for the other modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class LinearDecoder(nn.Module):
    """D(z) = W z + b, shaped as an image (B, 1, 4, 4)."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.W, self.b = nn.Parameter(W.clone()), nn.Parameter(b.clone())

    def forward(self, z):
        return (z.flatten(1) @ self.W.T + self.b).view(-1, 1, 4, 4)


@pytest.fixture
def linear_problem():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 3, generator=g) * 0.5
    b = torch.randn(16, generator=g) * 0.1
    x = torch.rand(5, 1, 4, 4, generator=g)
    return LinearDecoder(W, b), x


def closed_form(decoder, x, t):
    """ℓ = ½‖x − Wz − b‖² (sse with α = ½): z(t) = (I − e^{−WᵀWt})(WᵀW)⁻¹Wᵀ(x − b)."""
    W, b = decoder.W.detach(), decoder.b.detach()
    A = W.T @ W
    target = torch.linalg.solve(A, W.T @ (x.flatten(1) - b).T)  # (nz, B)
    return ((torch.eye(3) - torch.linalg.matrix_exp(-A * t)) @ target).T.reshape(-1, 3, 1, 1)


def solve(decoder, x, solver, t_end, **kw):
    lg = LossGradient(decoder, x, "sse", max_nfe=200_000, where="test")
    z0 = torch.zeros(x.shape[0], 3, 1, 1)
    times = torch.tensor([0.0, t_end])
    return ode_flow(
        lg,
        z0,
        order=kw.pop("order", 1),
        alpha=0.5,
        times=times,
        solver=solver,
        rtol=1e-8,
        atol=1e-10,
        step_size=kw.pop("step_size", 0.01),
        grad_mode="approximate",
    )[-1]


@pytest.mark.parametrize("solver", ODE_SOLVERS)
def test_every_solver_matches_the_closed_form_linear_flow(linear_problem, solver):
    decoder, x = linear_problem
    z = solve(decoder, x, solver, 3.0)
    tol = 5e-3 if solver == "euler" else 1e-5 if solver in FIXED_STEP_SOLVERS else 1e-6
    torch.testing.assert_close(z, closed_form(decoder, x, 3.0), atol=tol, rtol=0)


def test_the_adaptive_step_reaches_the_least_squares_latent(linear_problem):
    decoder, x = linear_problem
    lg = LossGradient(decoder, x, "sse", max_nfe=100_000, where="test")
    with torch.no_grad():
        z = adaptive_step_flow(lg, torch.zeros(5, 3, 1, 1), alpha=0.5, tau=1e4, slope_tol=1e-14)
    W, b = decoder.W.detach(), decoder.b.detach()
    least_squares = torch.linalg.lstsq(W, (x.flatten(1) - b).T).solution.T.reshape(-1, 3, 1, 1)
    torch.testing.assert_close(z, least_squares, atol=1e-4, rtol=0)


def test_the_adaptive_step_never_accepts_a_step_that_raises_any_samples_loss(linear_problem):
    decoder, x = linear_problem
    decoder.W.data *= 4  # stiff: h_max = 10 would overshoot wildly if accepted blindly
    lg = LossGradient(decoder, x, "sse", max_nfe=100_000, where="test")
    per_step = []
    with torch.no_grad():
        adaptive_step_flow(
            lg,
            torch.zeros(5, 3, 1, 1),
            alpha=0.5,
            tau=200.0,
            on_accept=lambda nfe, t, loss: per_step.append(loss.clone()),
        )
    losses = torch.stack(per_step)
    assert lg.stats.rejected > 0, "the stiff case must make the rule reject steps"
    assert (losses[1:] <= losses[:-1] + 1e-12).all()


def test_second_order_flow_beats_first_order_per_unit_time_after_the_initial_phase():
    """ℓ = ½ zᵀ diag(1, 1e-3) z shifted to a minimiser: along the flat direction, first order
    contracts like e^{−μt} and Nesterov's ODE like 2J₁(√μ t)/(√μ t), which is smaller for t > ~8."""
    W = torch.zeros(16, 3)
    W[0, 0], W[1, 1], W[2, 2] = 1.0, 1e-3**0.5, 1e-3**0.5
    decoder, x = LinearDecoder(W, torch.zeros(16)), torch.zeros(2, 1, 4, 4)
    x.view(2, 16)[:, :3] = 1.0

    def loss_at(order):
        z = solve(decoder, x, "dopri5", 50.0, order=order)
        return float(((decoder(z) - x) ** 2).sum().detach())

    assert loss_at(2) < 0.8 * loss_at(1)


def euler_flow(lg: LossGradient, t_end: float, step_size: float) -> torch.Tensor:
    """The first-order flow of the 5-image linear problem by explicit Euler, from z = 0."""
    return ode_flow(
        lg,
        torch.zeros(5, 3, 1, 1),
        order=1,
        alpha=0.5,
        times=torch.tensor([0.0, t_end]),
        solver="euler",
        rtol=1e-3,
        atol=1e-3,
        step_size=step_size,
        grad_mode="approximate",
    )


def test_the_evaluation_cap_raises_a_clear_error(linear_problem):
    decoder, x = linear_problem
    lg = LossGradient(decoder, x, "sse", max_nfe=10, where="run mnist/gfe-nz3-s0 batch 7")
    with pytest.raises(
        FlowError, match="run mnist/gfe-nz3-s0 batch 7: more than 10 gradient evaluations"
    ):
        euler_flow(lg, t_end=100.0, step_size=0.1)


def test_a_diverging_flow_stops_with_a_clear_error(linear_problem):
    decoder, x = linear_problem
    lg = LossGradient(decoder, x, "sse", max_nfe=100_000, where="diverging")
    with pytest.raises(FlowError, match="diverging: .*non-finite"):
        # explicit Euler far beyond its stability limit (step 50 on eigenvalues ~1) blows up
        euler_flow(lg, t_end=50_000.0, step_size=50.0)


def _decoder_grads(grad_mode, decoder, x, solver="dopri5"):
    enc = GradientFlowEncoder(
        3,
        flow="first_order",
        loss="sse",
        alpha=0.5,
        tau=2.0,
        solver=solver,
        rtol=1e-10,
        atol=1e-12,
        step_size=0.05,
        grad_mode=grad_mode,
    )
    decoder.zero_grad()
    z = enc(x, decoder, create_graph=True)
    ((decoder(z) - x) ** 2).sum().backward()
    return torch.cat([p.grad.flatten() for p in decoder.parameters()])


def tiny_mlp_decoder():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3, 8),
        nn.Tanh(),
        nn.Linear(8, 16),
        nn.Sigmoid(),
        nn.Unflatten(1, (1, 4, 4)),
    )


def test_adjoint_and_backprop_through_the_solver_give_the_same_decoder_gradient():
    decoder, x = (
        tiny_mlp_decoder(),
        torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1)),
    )
    backprop = _decoder_grads("backprop", decoder, x)
    adjoint = _decoder_grads("adjoint", decoder, x)
    torch.testing.assert_close(adjoint, backprop, rtol=1e-5, atol=1e-8)
    approximate = _decoder_grads("approximate", decoder, x)
    assert not torch.allclose(approximate, backprop, rtol=1e-3)  # the detached latent drops a term


def test_backprop_through_a_fixed_step_solver_passes_gradcheck():
    decoder, x = (
        tiny_mlp_decoder(),
        torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2)),
    )
    names = [n for n, _ in decoder.named_parameters()]
    enc = GradientFlowEncoder(
        3,
        flow="first_order",
        loss="sse",
        alpha=0.5,
        tau=0.5,
        solver="rk4",
        step_size=0.1,
        grad_mode="backprop",
    )
    from torch.func import functional_call

    class Bound(nn.Module):
        def __init__(self, params):
            super().__init__()
            self.params = params

        def forward(self, z):
            return functional_call(decoder, self.params, (z,))

    def f(*flat):
        bound = Bound(dict(zip(names, flat, strict=True)))
        z = enc(x, bound, create_graph=True)
        return ((bound(z) - x) ** 2).sum()

    values = tuple(p.detach().clone().requires_grad_(True) for p in decoder.parameters())
    assert torch.autograd.gradcheck(f, values, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_flows_do_not_couple_samples():
    decoder = tiny_mlp_decoder()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    for flow in ("first_order", "second_order", "adaptive_step"):
        enc = GradientFlowEncoder(3, flow=flow, loss="bce", tau=50.0, rtol=1e-8, atol=1e-10)
        together = enc(x, decoder, create_graph=False)
        alone = enc(x[:2], decoder, create_graph=False)
        if flow == "adaptive_step":  # one step size for the batch: not bitwise, but close
            torch.testing.assert_close(together[:2], alone, atol=2e-2, rtol=0)
        else:
            torch.testing.assert_close(together[:2], alone, atol=1e-6, rtol=0)
