"""The package imports and exposes its public API."""

import torch

import descentlab


def test_public_classes_are_torch_optimizers():
    for name in ["SGD", "Momentum", "Nesterov", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "NAdam"]:
        cls = getattr(descentlab, name)
        assert issubclass(cls, torch.optim.Optimizer), name


def test_registry_lists_the_lecture_optimizers_first():
    lecture = ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "nadam"]
    names = descentlab.optimizer_names()
    assert names[:len(lecture)] == lecture
    assert len(set(names)) == len(names) and all(name == name.lower() for name in names)
