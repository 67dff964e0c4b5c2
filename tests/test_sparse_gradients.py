"""Sparse gradients where torch.optim takes them: SGD and Adagrad step them on the reference loop (every ``impl``
leaves a sparse gradient to it) with torch's results; coupled weight decay and the other classes refuse them."""

from __future__ import annotations

import pytest
import torch

import descentlab

IMPLS = ("auto", "reference", "foreach", "fused")


def sparse_gradients(steps: int, n: int = 6, nnz: int = 5, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    """Uncoalesced COO gradients (indices repeat, as torch's test_rosenbrock_sparse "tortures" the optimizer)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.sparse_coo_tensor(torch.randint(0, n, (1, nnz), generator=gen),
                                    torch.randn(nnz, generator=gen, dtype=dtype), (n,)) for _ in range(steps)]


def run(cls, grads, start, **kwargs):
    p = torch.nn.Parameter(start.clone())
    opt = cls([p], **kwargs)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach(), opt


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(lr=0.1), dict(lr=0.05, maximize=True)])
def test_sgd_without_momentum_equals_torch_to_the_bit(impl, options):
    start = torch.linspace(-1, 1, 6, dtype=torch.float64)
    grads = sparse_gradients(12)
    ours, opt = run(descentlab.SGD, grads, start, impl=impl, **options)
    theirs, _ = run(torch.optim.SGD, grads, start, **options)
    assert torch.equal(ours, theirs)
    assert len(opt.state) == 0  # no empty state entries, as torch


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                     dict(momentum=0.5, dampening=0.3)])
def test_sgd_with_momentum_equals_torch_to_rounding(impl, options):
    """torch keeps a sparse momentum buffer; descentlab's stays dense (its state layout): equal to rounding."""
    start = torch.linspace(-1, 1, 6, dtype=torch.float64)
    grads = sparse_gradients(20, seed=1)
    ours, opt = run(descentlab.SGD, grads, start, lr=0.1, impl=impl, **options)
    theirs, _ = run(torch.optim.SGD, grads, start, lr=0.1, **options)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)
    assert opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"].layout == torch.strided


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(lr=0.1), dict(lr=0.5, lr_decay=0.01, eps=1e-6),
                                     dict(lr=0.2, initial_accumulator_value=0.3, maximize=True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adagrad_follows_torchs_sparse_branch_to_the_bit(impl, options, dtype):
    start = torch.linspace(-1, 1, 6, dtype=dtype)
    grads = sparse_gradients(15, seed=2, dtype=dtype)
    ours, opt = run(descentlab.Adagrad, grads, start, impl=impl, **options)
    theirs, ref = run(torch.optim.Adagrad, grads, start, **options)
    assert torch.equal(ours, theirs)
    (p_ours,), (p_theirs,) = opt.state.values(), ref.state.values()
    assert torch.equal(p_ours["sum"], p_theirs["sum"]) and torch.equal(p_ours["step"], p_theirs["step"])


def test_adagrad_sparse_entries_without_gradient_are_untouched():
    p = torch.nn.Parameter(torch.ones(4))
    opt = descentlab.Adagrad([p], lr=0.1)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1, 1]]), torch.tensor([0.5, 0.5]), (4,))
    opt.step()
    assert p.detach()[[0, 2, 3]].tolist() == [1.0, 1.0, 1.0] and p.detach()[1] < 1
    assert opt.state[p]["sum"][[0, 2, 3]].tolist() == [0.0, 0.0, 0.0]


def test_sparse_embedding_trains_with_sgd_and_adagrad():
    for cls in (descentlab.SGD, descentlab.Adagrad):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 3, sparse=True)
        opt = cls(emb.parameters(), lr=0.1)
        first = None
        for _ in range(20):
            opt.zero_grad()
            loss = emb(torch.tensor([1, 2, 2, 7])).pow(2).sum()
            first = loss.item() if first is None else first
            loss.backward()
            opt.step()
        assert loss.item() < first


@pytest.mark.parametrize("cls", [descentlab.SGD, descentlab.Adagrad])
def test_coupled_weight_decay_with_a_sparse_gradient_is_refused_as_torch(cls):
    p = torch.nn.Parameter(torch.ones(4))
    opt = cls([p], lr=0.1, weight_decay=0.1)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.tensor([0.5]), (4,))
    with pytest.raises(RuntimeError, match="weight_decay option is not compatible with sparse gradients"):
        opt.step()
    torch_opt = getattr(torch.optim, cls.__name__)([p], lr=0.1, weight_decay=0.1)
    with pytest.raises(RuntimeError):  # torch: the same words (Adagrad), or add(sparse, dense) refused (SGD)
        torch_opt.step()


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "Adadelta", "NAdam", "Adamax"])
def test_classes_whose_torch_twin_refuses_sparse_gradients_still_refuse(name):
    p = torch.nn.Parameter(torch.ones(4))
    opt = getattr(descentlab, name)([p])
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.tensor([0.5]), (4,))
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
