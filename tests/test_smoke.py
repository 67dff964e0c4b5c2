"""The package imports and exposes its public API."""

import torch

import descentlab


def test_public_classes_are_torch_optimizers():
    for name in ["SGD", "Momentum", "Nesterov", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "NAdam"]:
        cls = getattr(descentlab, name)
        assert issubclass(cls, torch.optim.Optimizer), name


def test_registry_names_are_the_lecture_list():
    assert descentlab.optimizer_names() == [
        "sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "nadam"
    ]
