"""docs/notebooks/lab.ipynb runs top to bottom in a real Jupyter kernel (nbclient), and the lab's results display
inline: a race, a history and an lr-find show a picture and a table; fit's progress bar appears in the cell's
output; the user's matplotlib backend is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "lab.ipynb"


@pytest.fixture(scope="module")
def executed():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install 'descentlab[test]')")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install 'descentlab[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install 'descentlab[test]')")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def _html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs if o.output_type == "execute_result")


@pytest.mark.slow
def test_the_notebook_runs_and_results_display_inline(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    race_html, history_html, lr_html = _html(code[0]), _html(code[2]), _html(code[3])
    for html in (race_html, history_html, lr_html):
        assert '<img alt="' in html and "data:image/png;base64," in html and "<table>" in html
        assert len(html) < 120_000  # small: one scaled picture and a short table
    assert "race on ravine" in race_html and "momentum" in race_html
    assert "History: 40 steps, 5 epochs" in history_html and "train_loss" in history_html
    assert "suggested lr" in lr_html
    bar = "".join(o.get("text", "") for o in code[2].outputs if o.output_type == "stream")
    widget = any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in code[2].outputs)
    assert widget or "40/40" in bar  # tqdm's notebook widget, or its text bar without ipywidgets
    assert "'adam', 301" in code[4].outputs[0]["data"]["text/plain"]


def test_repr_html_outside_notebooks():
    from descentlab.lab import race
    from descentlab.train.history import History

    html = race("bowl", ["sgd"], steps=20)._repr_html_()
    assert "race on bowl" in html and "<table>" in html and html.count("<tr>") == 2
    assert "<table>" in History()._repr_html_()


def test_compare_result_displays_inline():
    from descentlab.lab.compare import CompareConfig, CompareResult

    def run(seed: int, diverged: bool = False) -> dict:
        epochs = [{"epoch": e, "val_loss": 1.0 / (e + 1 + seed), "val_accuracy": 0.5 + 0.1 * e} for e in range(3)]
        return {"epochs": epochs, "diverged": diverged, "test_accuracy": 0.8 + 0.01 * seed, "test_loss": 0.3,
                "steps_to_target": None, "seconds_to_target": None, "best_val_loss": 0.25}

    result = CompareResult(CompareConfig("digits", "logistic", ["sgd", "adam"], "unused", seeds=2),
                           runs={"sgd": [run(0), run(1)], "adam": [run(0), run(1, diverged=True)]},
                           best={"sgd": {"lr": 0.1}, "adam": {"lr": 0.01}})
    html = result._repr_html_()
    assert "comparison on digits · logistic" in html and "data:image/png;base64," in html
    assert html.count("<tr>") == 3 and "best_lr" in html and len(html) < 120_000
