"""``descentlab schedules`` draws real, decodable pictures and never overwrites silently."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from descentlab.cli import main


def test_draws_pictures_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["schedules", "--out", str(out), "--epochs", "30"]) == 0
    for name in ("schedules.png", "ema.png"):
        image = np.asarray(Image.open(out / name).convert("L"), dtype=float)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 5, f"{name} looks blank"
    assert main(["schedules", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["schedules", "--out", str(out), "--force"]) == 0


def test_bad_epochs(tmp_path, capsys):
    assert main(["schedules", "--out", str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "argument --epochs: must be an integer in [1, " in capsys.readouterr().err
