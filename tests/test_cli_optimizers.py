"""``descentlab optimizers``: every registry row listed, and each row that cannot race says why."""

from __future__ import annotations

from descentlab.cli import main
from descentlab.optim.registry import REGISTRY


def test_every_row_is_listed_and_rows_that_cannot_race_say_why(capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, spec in REGISTRY.items():
        row = next(i for i, line in enumerate(lines) if line.split()[:2] == [name, spec.cls.__name__])
        reason = spec.unmet()
        follows = lines[row + 1].strip() if row + 1 < len(lines) else ""
        if reason:
            assert follows == f"does not race: {reason}", (name, follows)
        else:
            assert not follows.startswith("does not race"), name
    assert "does not race: muon steps 2-D parameters only" in out
    assert "does not race: sparseadam takes sparse gradients only" in out
    assert "does not race: lbfgs needs step(closure)" in out
    assert "does not race: adafactor" not in out
