"""The identities between variants (design.md) and formulas.md's worked examples."""

from __future__ import annotations

import math

import torch

import descentlab


def _trajectory(make_opt, steps=40, seed=0, dtype=torch.float64, grad_fn=None):
    """Run an optimizer on a fixed quadratic-plus-noise gradient field; return the list of iterates."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.tensor([1.5, -2.0, 0.5], dtype=dtype))
    scale = torch.tensor([0.5, 2.0, 1.0], dtype=dtype)
    opt = make_opt([w])
    out = []
    for _ in range(steps):
        noise = torch.randn(3, generator=gen, dtype=dtype) * 0.1
        w.grad = grad_fn(w.detach()) if grad_fn else scale * w.detach() + noise
        opt.step()
        out.append(w.detach().clone())
    return torch.stack(out), opt, w


def test_momentum_ema_equals_sum_with_scaled_rate():
    lr, beta = 0.1, 0.9
    ema, _, _ = _trajectory(lambda p: descentlab.Momentum(p, lr=lr, beta=beta, form="ema"))
    total, _, _ = _trajectory(lambda p: descentlab.Momentum(p, lr=lr * (1 - beta), beta=beta, form="sum"))
    torch.testing.assert_close(ema, total, rtol=1e-12, atol=1e-12)


def test_sgd_ema_form_equals_torch_sgd_with_scaled_rate():
    lr, beta = 0.2, 0.8
    ema, _, _ = _trajectory(lambda p: descentlab.SGD(p, lr=lr, momentum=beta, momentum_form="ema"))
    torch_sum, _, _ = _trajectory(lambda p: torch.optim.SGD(p, lr=lr * (1 - beta), momentum=beta))
    torch.testing.assert_close(ema, torch_sum, rtol=1e-12, atol=1e-12)


def test_torch_dampening_is_not_the_ema_form():
    # formulas.md: SGD(momentum=β, dampening=β) differs from the ema form because torch's first buffer is g.
    beta = 0.9
    ema, _, _ = _trajectory(lambda p: descentlab.SGD(p, lr=0.1, momentum=beta, momentum_form="ema"), steps=3)
    damp, _, _ = _trajectory(lambda p: torch.optim.SGD(p, lr=0.1, momentum=beta, dampening=beta), steps=3)
    assert not torch.allclose(ema[0], damp[0])


def test_momentum_bias_correction_removes_the_startup_bias():
    # With a constant gradient the corrected average equals g from the first step: w moves by η g each step.
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    traj, _, _ = _trajectory(lambda p: descentlab.Momentum(p, lr=0.1, beta=0.9, bias_correction=True),
                             steps=5, grad_fn=lambda w: g)
    start = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    for t in range(5):
        torch.testing.assert_close(traj[t], start - 0.1 * (t + 1) * g, rtol=1e-12, atol=1e-12)


def test_nesterov_stored_form_reproduces_textbook_lookahead():
    """Textbook NAG: a ← βa + ∇L(w − ηβa); w ← w − ηa. The stored form holds u = w − ηβa."""
    lr, beta = 0.05, 0.9
    scale = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)

    def grad(x):
        return scale * x + torch.sin(x)  # a non-quadratic field

    w = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    a = torch.zeros(3, dtype=torch.float64)
    u = torch.nn.Parameter(w.clone())  # a_0 = 0 so u_0 = w_0
    opt = descentlab.Nesterov([u], lr=lr, beta=beta)
    for _ in range(60):
        a = beta * a + grad(w - lr * beta * a)
        w = w - lr * a
        u.grad = grad(u.detach())
        opt.step()
        torch.testing.assert_close(opt.textbook_iterate(u), w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(u.detach(), w - lr * beta * a, rtol=1e-10, atol=1e-12)


def test_rmsprop_is_adam_without_first_moment_and_correction():
    for placement in ("inside", "outside"):
        rms, _, _ = _trajectory(lambda p: descentlab.RMSprop(p, lr=0.01, alpha=0.95, eps=1e-6, eps_placement=placement))
        adam, _, _ = _trajectory(lambda p: descentlab.Adam(p, lr=0.01, betas=(0.0, 0.95), eps=1e-6,
                                                           bias_correction=False, eps_placement=placement))
        torch.testing.assert_close(rms, adam, rtol=1e-12, atol=1e-12)


def test_adamw_without_decay_is_adam():
    adamw, _, _ = _trajectory(lambda p: descentlab.AdamW(p, lr=0.01, weight_decay=0.0))
    adam, _, _ = _trajectory(lambda p: descentlab.Adam(p, lr=0.01))
    assert torch.equal(adamw, adam)


def test_adam_efficient_form_equals_step_dependent_eps():
    """Kingma & Ba's efficient form, w ← w − η√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε̂), equals Adam with ε = ε̂/√(1−β₂ᵗ)."""
    lr, b1, b2, eps_hat = 0.01, 0.9, 0.999, 1e-3
    w_eff = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    p = torch.nn.Parameter(w_eff.clone())
    opt = descentlab.Adam([p], lr=lr, betas=(b1, b2), eps=eps_hat)
    for t in range(1, 30):
        g = 0.5 * w_eff + 0.1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w_eff = w_eff - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + eps_hat)
        for group in opt.param_groups:
            group["eps"] = eps_hat / math.sqrt(1 - b2**t)
        p.grad = 0.5 * p.detach() + 0.1
        opt.step()
        torch.testing.assert_close(p.detach(), w_eff, rtol=1e-12, atol=1e-13)


def test_worked_rmsprop_example_to_printed_digits():
    # formulas.md: w = [0.8, 1.2, 0.5], g = [0.1, −0.3, 0.2], β = 0.9, S₀ = 0, ε inside, η = 0.01.
    for eps in (0.0, 1e-8):
        w = torch.nn.Parameter(torch.tensor([0.8, 1.2, 0.5], dtype=torch.float64))
        w.grad = torch.tensor([0.1, -0.3, 0.2], dtype=torch.float64)
        opt = descentlab.RMSprop([w], lr=0.01, alpha=0.9, eps=eps, eps_placement="inside")
        opt.step()
        assert [round(x, 3) for x in opt.state[w]["square_avg"].tolist()] == [0.001, 0.009, 0.004]
        assert [round(x, 6) for x in w.tolist()] == [0.768377, 1.231623, 0.468377]


def test_first_rmsprop_step_has_size_lr_over_sqrt_one_minus_beta():
    w = torch.nn.Parameter(torch.tensor([3.0, -1.0, 0.2], dtype=torch.float64))
    w.grad = torch.tensor([5.0, -0.01, 1e-3], dtype=torch.float64)
    descentlab.RMSprop([w], lr=0.01, alpha=0.9, eps=0.0).step()
    step = torch.tensor([3.0, -1.0, 0.2], dtype=torch.float64) - w.detach()
    torch.testing.assert_close(step.abs(), torch.full((3,), 0.01 / math.sqrt(0.1), dtype=torch.float64))
