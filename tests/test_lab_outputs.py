"""descentlab.outputs: atomic writes and the output-folder checks (nothing a user made is lost or overwritten)."""

from __future__ import annotations

import os

import pytest

from descentlab.lab.train_modes import ours, prepare_out
from descentlab.outputs import atomic_path, check_empty, check_outputs, remove_stale, staged, write_text_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomically(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp.name.startswith(".")
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    write_text_atomically(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_check_outputs_refuses_earlier_outputs_unless_forced(tmp_path):
    check_outputs(tmp_path, ["race.png"], False, "a race")  # nothing there yet
    (tmp_path / "race.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"already holds a race \(race.png\); pass --force"):
        check_outputs(tmp_path, ["race.png", "race.gif"], False, "a race")
    check_outputs(tmp_path, ["race.png"], True, "a race")
    blocker = tmp_path / "file.txt"
    blocker.write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        check_outputs(blocker, ["race.png"], True, "a race")


def test_check_empty(tmp_path):
    check_empty(tmp_path / "new")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not empty; choose another --out or pass --force"):
        check_empty(tmp_path)
    check_empty(tmp_path, force=True)
    check_empty(tmp_path, unless=lambda out: (out / "notes.txt").exists())


def test_force_replaces_only_descentlabs_outputs_and_resume_keeps_everything(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "batch-16").mkdir()
    for name in ("metrics.json", "curves.png", "batch_modes.png", "notes.txt"):
        (out / name).write_text(name)
    with pytest.raises(FileExistsError, match="pass --resume to continue the run there or --force to replace it"):
        prepare_out(out, resume=False, force=False)
    assert prepare_out(out, resume=True, force=True) is False  # --resume wins: nothing removed, nothing staged
    assert len(list(out.iterdir())) == 6
    assert prepare_out(out, resume=False, force=True) is True  # --force: the new run is staged ...
    assert len(list(out.iterdir())) == 6  # ... and nothing is removed before it has succeeded
    with staged(out, ours) as stage:
        (stage / "metrics.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "notes.txt" and (out / "metrics.json").read_text() == "new"


def test_a_failed_forced_run_leaves_the_earlier_outputs_as_they_were(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with staged(out, ours) as stage:
            (stage / "metrics.json").write_text("new")
            raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["metrics.json"] and (out / "metrics.json").read_text() == "old"


def test_stale_temporaries_and_staging_of_dead_writers_are_cleaned(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "run"
    out.mkdir()
    for name in (f".history.{dead}.tmp.csv", f".metrics.{os.getpid()}.tmp.json"):
        (out / name).write_text("half")
    (out / f".descentlab-new-{dead}").mkdir()  # a run killed before it finished: dropped
    (out / "metrics.json").write_text("old")
    removed = remove_stale(out)
    assert sorted(p.name for p in removed) == sorted([f".history.{dead}.tmp.csv", f".descentlab-new-{dead}"])
    assert sorted(p.name for p in out.iterdir()) == sorted([f".metrics.{os.getpid()}.tmp.json", "metrics.json"])
    # killed mid-swap (the old outputs moved aside, the new ones not all in): the swap is completed
    (out / f".descentlab-old-{dead}").mkdir()
    os.replace(out / "metrics.json", out / f".descentlab-old-{dead}" / "metrics.json")
    (out / f".descentlab-new-{dead}").mkdir()
    (out / f".descentlab-new-{dead}" / "metrics.json").write_text("new")
    remove_stale(out)
    assert (out / "metrics.json").read_text() == "new" and not list(out.glob(".descentlab-*"))
