"""``torch.amp.GradScaler`` with descentlab optimizers (both paths).

descentlab declares ``_step_supports_amp_scaling``, as torch's fused optimizers do: GradScaler hands it
``grad_scale`` and ``found_inf`` and the step unscales the gradients itself (in the C kernel's single
pass on the fused path). With a power-of-two scale, scaling and unscaling are exact, so a scaled run
must equal an unscaled run bit for bit; a step with an inf must change nothing but the scale.
"""

from __future__ import annotations

import pytest
import torch

import descentlab

CASES = [(descentlab.Adam, dict(lr=0.01)), (descentlab.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
         (descentlab.RMSprop, dict(lr=0.01, centered=True)), (descentlab.NAdam, dict(lr=0.01, weight_decay=0.01)),
         (descentlab.Adagrad, dict(lr=0.05)), (descentlab.Adadelta, dict()), (descentlab.Momentum, dict(lr=0.05))]


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    x, y = torch.randn(64, 6, generator=gen), torch.randn(64, 1, generator=gen)
    return model, x, y


def _train(cls, opts, impl, scaler, steps=8, poison=(), clip=None):
    model, x, y = _problem()
    opt = cls(model.parameters(), impl=impl, **opts)
    scales, grads = [], []
    for step in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        if step in poison:
            loss = loss * float("inf")
        if scaler is None:
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if step not in poison:
                opt.step()
        else:
            scaler.scale(loss).backward()
            if clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(opt)
            scaler.update()
            scales.append(float(scaler.get_scale()))
        grads.append([p.grad.detach().clone() for p in model.parameters()])
    return model, opt, scales, grads


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cls, opts", CASES, ids=lambda v: getattr(v, "__name__", "") or "")
@pytest.mark.usefixtures("gatherer")
def test_scaled_run_equals_unscaled_run(cls, opts, impl):
    plain, _, _, plain_grads = _train(cls, opts, impl, None)
    scaled, _, scales, scaled_grads = _train(cls, opts, impl, torch.amp.GradScaler("cpu", init_scale=2.0**12))
    assert scales == [2.0**12] * len(scales)  # no inf: the scale never moved (growth interval 2000)
    for p, q in zip(plain.parameters(), scaled.parameters()):
        assert torch.equal(p, q)
    for step_a, step_b in zip(plain_grads, scaled_grads):  # .grad is left unscaled, as unscale_ leaves it
        assert all(torch.equal(a, b) for a, b in zip(step_a, step_b))


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.usefixtures("gatherer")
def test_an_inf_step_changes_nothing_but_the_scale(impl):
    plain, plain_opt, _, _ = _train(descentlab.Adam, dict(lr=0.01), impl, None, poison=(3,))
    scaled, scaled_opt, scales, _ = _train(descentlab.Adam, dict(lr=0.01), impl,
                                           torch.amp.GradScaler("cpu", init_scale=2.0**12), poison=(3,))
    assert scales[2] == 2.0**12 and scales[3] == 2.0**11  # backed off once, at the poisoned step
    for p, q in zip(plain.parameters(), scaled.parameters()):
        assert torch.equal(p, q)
        assert float(scaled_opt.state[q]["step"]) == float(plain_opt.state[p]["step"]) == 7.0


def test_unscale_before_clipping_is_not_unscaled_twice():
    plain, _, _, _ = _train(descentlab.RMSprop, dict(lr=0.01), "fused", None, clip=0.5)
    scaled, _, _, _ = _train(descentlab.RMSprop, dict(lr=0.01), "fused", torch.amp.GradScaler("cpu", init_scale=2.0**8),
                             clip=0.5)
    for p, q in zip(plain.parameters(), scaled.parameters()):
        assert torch.equal(p, q)


@pytest.mark.usefixtures("gatherer")
def test_paths_agree_under_the_scaler():
    fused, _, _, _ = _train(descentlab.NAdam, dict(lr=0.01), "fused", torch.amp.GradScaler("cpu", init_scale=2.0**10))
    ref, _, _, _ = _train(descentlab.NAdam, dict(lr=0.01), "reference", torch.amp.GradScaler("cpu", init_scale=2.0**10))
    for p, q in zip(fused.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1.3e-6, atol=1e-5)


def test_grad_scaler_hands_the_scale_to_step(monkeypatch):
    """The scaler uses descentlab's in-step unscaling (not its own ``unscale_`` pass)."""
    from descentlab.optim.base import RuleOptimizer

    seen = []
    original = RuleOptimizer._grad_inv_scale
    monkeypatch.setattr(RuleOptimizer, "_grad_inv_scale", lambda self: seen.append(original(self)) or seen[-1])
    _train(descentlab.Adam, dict(lr=0.01), "fused", torch.amp.GradScaler("cpu", init_scale=2.0**12), steps=2)
    assert seen == [2.0**-12, 2.0**-12]
