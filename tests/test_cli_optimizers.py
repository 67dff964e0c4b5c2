"""``descentlab optimizers``: every registry row listed, and each row that cannot race says why."""

from __future__ import annotations

from descentlab.cli import main
from descentlab.optim.registry import REGISTRY


def test_every_row_is_listed_and_rows_that_cannot_race_say_why(capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    from descentlab.lab.race import RACE_OFFERS

    for name, spec in REGISTRY.items():
        row = next(i for i, line in enumerate(lines) if line.split()[:2] == [name, spec.cls.__name__])
        reason = spec.unmet(RACE_OFFERS)
        follows = lines[row + 1].strip() if row + 1 < len(lines) else ""
        if reason:
            assert follows == f"does not race: {reason}", (name, follows)
        else:
            assert not follows.startswith("does not race"), name
    assert "does not race: muon steps 2-D parameters only" in out
    assert "does not race: sparseadam takes sparse gradients only" in out
    assert "does not race: lbfgs" not in out and "does not race: adafactor" not in out
    lbfgs = next(i for i, line in enumerate(lines) if line.split()[:2] == ["lbfgs", "LBFGS"])
    assert lines[lbfgs + 1].strip() == ("races through step(closure): one race step is up to max_iter L-BFGS "
                                        "iterations (max_eval evaluations of f and ∇f, the race table counts them)")


def test_presets_lists_every_preset_with_its_class_and_options_which_rebuild_it(capsys):
    import torch

    import descentlab
    from descentlab.optim.registry import PRESETS

    assert main(["optimizers", "--presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["library", "name", "class", "options"]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[1:len(PRESETS) + 1]}
    assert len(rows) == len(PRESETS) and f"{len(PRESETS)} presets;" in lines[-1]
    for p in PRESETS.values():
        cls, *options = rows[(p.library, p.name)]
        assert cls == REGISTRY[p.optimizer].cls.__name__, p.key
        assert ("lr=<required>" in options) == p.requires_lr, p.key
        for key, value in p.options.items():
            assert any(o.startswith(f"{key}=") for o in options), (p.key, key)
        # the listed class and options are what descentlab.preset builds (re-exported at the top level)
        opt = descentlab.preset(p.library, p.name, [torch.zeros(1, requires_grad=True)], lr=0.01)
        assert type(opt).__name__ == cls
        assert all(opt.defaults[k] == v for k, v in p.options.items() if k in opt.defaults and k != "lr"), p.key
    assert rows[("keras", "Adam")][1:] == ["lr=0.001", "betas=(0.9,", "0.999)", "eps=1e-07", "amsgrad=False",
                                           "efficient_form=True", "decoupled_weight_decay=True"]
    assert rows[("torch", "Adam")][1:] == ["(the", "class's", "defaults)"]
    assert descentlab.PRESETS is PRESETS and descentlab.preset_names() == list(PRESETS)
    assert descentlab.get_preset("optax", "nadam") is PRESETS["optax-nadam"]
    assert descentlab.optim.get_preset is descentlab.get_preset
