"""Drawing never touches a user's pyplot session: every picture of the library is a ``Figure`` on its own Agg
canvas, so the backend, pyplot's open figures and the current figure are what the user left — and a process
that never imported pyplot still has not, after drawing everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

DRAW_EVERYTHING = r"""
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[-1])
from descentlab.lab.compare import CompareConfig, CompareResult
from descentlab.lab.compare_report import write_report
from descentlab.lab.lr_find import LRFindResult
from descentlab.lab.race import race
from descentlab.lab.race_outputs import write_race_outputs
from descentlab.lab.train_modes import overlay_figure
from descentlab.lab.train_run import TrainResult
from descentlab.pictures import schedules_figure, temperature_ema_figure
from descentlab.train import History

schedules_figure(out / "schedules.png")
temperature_ema_figure(out / "ema.png")
history = History()
for step in range(6):
    history.record_step(step=step, epoch=step // 3, loss=1.0 / (step + 1), lr=0.1, samples=step, seconds=step / 10)
history.record_epoch({"epoch": 0, "train_loss": 0.5, "val_loss": 0.6, "steps": 3, "seconds": 0.3})
history.record_epoch({"epoch": 1, "train_loss": 0.2, "val_loss": 0.3, "steps": 6, "seconds": 0.6})
history.plot(out / "curves.png", title="t")
overlay_figure({"full": TrainResult(history, {}, None, "linear", 0.1)}, out / "batch_modes.png", "t")
lrs = list(np.geomspace(1e-4, 1, 20))
LRFindResult(lrs, [1 / (1 + i) for i in range(20)], [1 / (1 + i) for i in range(20)], lrs[5], "r", 0.1).plot(
    out / "lr_find.png")
write_race_outputs(race("ravine", ["sgd"], steps=20, tune=True), out / "race", frames=4)
run = {"diverged": False, "epochs": [{"epoch": 0, "val_loss": 0.5}, {"epoch": 1, "val_loss": 0.4}],
       "best_val_loss": 0.4, "test_loss": 0.5, "test_accuracy": None, "steps_to_target": None,
       "seconds_to_target": None}
(out / "compare").mkdir()
write_report(CompareResult(CompareConfig("iris", "logistic", ["sgd"], str(out / "compare")), runs={"sgd": [run]},
                           best={"sgd": {"lr": 0.1}}), out / "compare")
"""

USER_SESSION = r"""
import json, runpy, sys
import matplotlib
{before}
runpy.run_path({script!r})
drawing_imported_pyplot = "matplotlib.pyplot" in sys.modules and not {before_imports_pyplot}
import matplotlib.pyplot as plt
print(json.dumps({{"backend": matplotlib.get_backend(), "figures": plt.get_fignums(),
                   "drawing_imported_pyplot": drawing_imported_pyplot, "current_is_mine": {mine}}}))
"""


def _run(tmp_path: Path, before: str = "", mine: str = "None") -> dict:
    script = tmp_path / "draw.py"
    script.write_text(DRAW_EVERYTHING)
    session = tmp_path / "session.py"
    session.write_text(USER_SESSION.format(before=before, script=str(script), mine=mine,
                                           before_imports_pyplot="pyplot" in before))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run([sys.executable, str(session), str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("schedules.png", "ema.png", "curves.png", "batch_modes.png", "lr_find.png", "race/race.png",
                 "race/race.gif", "compare/curves.png", "compare/profile.png"):
        assert (out / name).stat().st_size > 1000, name
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_drawing_leaves_the_users_pyplot_session_alone(tmp_path):
    """A notebook-like session: pyplot on a non-Agg backend with a figure open; the library draws everything."""
    before = "import matplotlib.pyplot as plt\nmine = plt.figure()\nplt.plot([1, 2], [3, 4])"
    state = _run(tmp_path, before, mine="plt.gcf() is mine")
    assert state == {"backend": "svg", "figures": [1], "drawing_imported_pyplot": False, "current_is_mine": True}


def test_drawing_never_imports_pyplot_nor_picks_a_backend(tmp_path):
    state = _run(tmp_path)
    assert state == {"backend": "svg", "figures": [], "drawing_imported_pyplot": False, "current_is_mine": None}
