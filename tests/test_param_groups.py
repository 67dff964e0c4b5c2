"""descentlab.param_groups: no weight decay on biases and norms, layer-wise rate decay, on real torch models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import descentlab


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8),
                         nn.ReLU(), nn.Linear(8, 2))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 11, width: int = 8, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        block = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, num_layers=layers, norm=nn.LayerNorm(width),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)))


def _by_decay(groups):
    names = {}
    for group in groups:
        for name in group["param_names"]:
            names[name] = group["weight_decay"]
    return names


def test_mlp_biases_and_norms_are_not_decayed():
    model = _mlp()
    groups = descentlab.param_groups(model, weight_decay=0.05)
    decay = _by_decay(groups)
    assert set(decay) == {name for name, _ in model.named_parameters()}
    assert {n for n, wd in decay.items() if wd == 0.05} == {"0.weight", "3.weight", "6.weight"}
    assert {n for n, wd in decay.items() if wd == 0.0} == {"0.bias", "1.weight", "1.bias", "3.bias", "4.weight",
                                                            "4.bias", "6.bias"}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # ready for torch's optimizers and ours; the groups' decay is what they use
    for cls in (torch.optim.AdamW, descentlab.AdamW):
        opt = cls(descentlab.param_groups(model, weight_decay=0.05), lr=1e-3)
        assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.05]


def test_transformer_groups_and_layer_decay():
    model = TinyTransformer()
    decay = _by_decay(descentlab.param_groups(model, weight_decay=0.1))
    decayed = {n for n, wd in decay.items() if wd == 0.1}
    assert "encoder.layers.0.self_attn.in_proj_weight" in decayed and "embed.weight" in decayed
    assert "encoder.layers.0.self_attn.in_proj_bias" not in decayed  # a bias by name, not by module
    assert "encoder.layers.2.norm1.weight" not in decayed and "encoder.norm.weight" not in decayed
    groups = descentlab.param_groups(model, weight_decay=0.1, layer_decay=0.5, lr=1e-2)
    lr_of = {name: g["lr"] for g in groups for name in g["param_names"]}
    assert lr_of["head.weight"] == pytest.approx(1e-2)  # after the 3 blocks: id 4, scale 0.5⁰
    assert lr_of["encoder.norm.weight"] == pytest.approx(1e-2)
    assert lr_of["encoder.layers.2.linear1.weight"] == pytest.approx(5e-3)
    assert lr_of["encoder.layers.0.linear1.weight"] == pytest.approx(1.25e-3)
    assert lr_of["embed.weight"] == pytest.approx(1e-2 * 0.5**4)
    assert all(g["lr_scale"] * 1e-2 == pytest.approx(g["lr"]) for g in groups)
    # trains: one step of a real loss with those groups moves every trainable parameter
    opt = descentlab.AdamW(groups, lr=1e-2)
    tokens = torch.randint(0, 11, (4, 5), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    nn.functional.cross_entropy(model(tokens).reshape(-1, 11), tokens.reshape(-1)).backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_frozen_parameters_are_left_out_and_custom_patterns():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    groups = descentlab.param_groups(model, weight_decay=0.01, no_decay=("bias",))
    decay = _by_decay(groups)
    assert "0.weight" not in decay
    assert decay["1.weight"] == 0.01  # "norm" not asked for: the LayerNorm weight is decayed
    assert decay["3.bias"] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_decay": -0.1}, "weight_decay must be a number in [0, inf), got -0.1"),
    ({"weight_decay": float("nan")}, "weight_decay"),
    ({"no_decay": "bias"}, "no_decay must be a sequence of name patterns"),
    ({"no_decay": ("bias", "")}, "no_decay patterns must be non-empty strings"),
    ({"layer_decay": 1.5, "lr": 0.1}, "layer_decay must be a number in (0, 1], got 1.5"),
    ({"layer_decay": 0.0, "lr": 0.1}, "layer_decay"),
    ({"layer_decay": 0.5}, "pass lr="),
    ({"lr": -1.0}, "lr must be a number"),
])
def test_bad_arguments_name_the_culprit(kwargs, message):
    with pytest.raises(ValueError) as info:
        descentlab.param_groups(TinyTransformer(), **kwargs)
    assert message in str(info.value)


def test_bad_models():
    with pytest.raises(ValueError, match="takes a torch.nn.Module, got list"):
        descentlab.param_groups([nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="needs the model's layers as an nn.ModuleList.*Sequential has none"):
        descentlab.param_groups(_mlp(), layer_decay=0.8, lr=1e-3)
