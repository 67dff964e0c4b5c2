"""``fit`` with a schedule-free optimizer, on real data: every reported metric is taken at the averaged weights x
(``optimizer.eval()``), the training trajectory y is the one of a loop that never evaluates (bit for bit), the
model returned holds x, checkpoints are stored in eval mode, and a kill in the middle resumes bit-exactly."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import descentlab
from descentlab import datasets, models
from descentlab.data.batches import MiniBatches
from descentlab.optim.registry import get_spec
from descentlab.train import evaluate, fit, get_loss, list_checkpoints, load_latest_checkpoint
from descentlab.train.eval_switch import has_train_eval_switch
from descentlab.train.partitioned import Partitioned, split_matrices

try:
    import schedulefree
except ImportError:  # pragma: no cover - the test extra installs it
    schedulefree = None

LOSS = get_loss("cross_entropy")
BATCH, EPOCHS, SEED = 32, 3, 5


@pytest.fixture(scope="module")
def data():
    return datasets.load("breast_cancer", seed=0)  # 341 training samples: 11 batches of 32 an epoch


def _setup(data, name="schedulefree-adamw", lr=0.01):
    model = models.build("mlp", data.n_features, data.n_outputs, seed=0, hidden=(16,))
    return model, get_spec(name).build(model.parameters(), lr=lr)


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _reference(data, name):
    """fit's steps by hand, never evaluating: y after every step; at each epoch end the losses at y and (on a deep
    copy switched to eval) at x."""
    model, opt = _setup(data, name)
    batches = MiniBatches(data.train, BATCH, seed=SEED)
    path, epochs = [], []
    model.train()
    for epoch in range(EPOCHS):
        for x, y in batches.batches(epoch):
            opt.zero_grad(set_to_none=True)
            LOSS(model(x), y).backward()
            opt.step()
            path.append(_weights(model))
        at_x, opt_x = copy.deepcopy((model, opt))
        opt_x.eval()
        epochs.append({"x": evaluate(at_x, data.val, LOSS, True), "y": evaluate(model, data.val, LOSS, True),
                       "train_x": evaluate(at_x, data.train, LOSS, True), "weights_x": _weights(at_x)})
    return path, epochs


@pytest.mark.parametrize("name", ["schedulefree-adamw", "schedulefree-sgd"])
def test_metrics_are_at_the_eval_weights_and_the_training_path_is_unchanged(data, name):
    path, expected = _reference(data, name)
    model, opt = _setup(data, name)
    seen = []
    history = fit(model, data.train, opt, loss="cross_entropy", epochs=EPOCHS, batch_size=BATCH, val=data.val,
                  accuracy=True, seed=SEED, progress=False, step_callback=lambda step: seen.append(_weights(model)))
    assert len(seen) == len(path) == EPOCHS * 11
    for step, (got, want) in enumerate(zip(seen, path), 1):  # y after every step, bit for bit
        assert all(torch.equal(a, b) for a, b in zip(got, want)), f"y differs after step {step}"
    for row, want in zip(history.epochs, expected):
        assert row["val_loss"] == want["x"]["loss"] and row["val_accuracy"] == want["x"]["accuracy"]
        assert row["train_loss"] == want["train_x"]["loss"]
        assert row["val_loss"] != want["y"]["loss"]  # y's loss is another number: the switch is measured
    # the model returned holds x (to test and deploy), the optimizer is in eval mode
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected[-1]["weights_x"]))
    assert all(group["train_mode"] is False for group in opt.param_groups)
    assert evaluate(model, data.val, LOSS, True)["loss"] == history.epochs[-1]["val_loss"]
    opt.train()  # back at y, where the next step would start
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(model.parameters(), path[-1]))


def test_detection_is_generic_and_plain_optimizers_are_never_switched(data):
    model, sf = _setup(data)
    assert has_train_eval_switch(sf) and has_train_eval_switch(descentlab.ScheduleFreeSGD(model.parameters()))
    assert not has_train_eval_switch(torch.optim.SGD(model.parameters(), lr=0.1))
    assert not has_train_eval_switch(descentlab.Adam(model.parameters()))
    assert not has_train_eval_switch(model)  # a module's train()/eval() set its mode: not an optimizer switch
    plain = Partitioned([descentlab.Adam([model[0].weight]), descentlab.SGD([model[0].bias], lr=0.1)])
    assert not has_train_eval_switch(plain)
    plain.eval()  # no part has modes: nothing moves
    mixed = Partitioned([descentlab.ScheduleFreeAdamW([model[0].weight]), descentlab.AdamW([model[0].bias])])
    assert has_train_eval_switch(mixed)


def test_partitioned_forwards_the_switch_and_fit_evaluates_it_at_x(data):
    """Muon's split with a schedule-free companion: fit switches the schedule-free part, and the AdamW part's
    weights are untouched by the switch."""
    model = models.build("mlp", data.n_features, data.n_outputs, seed=0, hidden=(16,))
    weights = [p for p in model.parameters() if p.ndim == 2]
    biases = [p for p in model.parameters() if p.ndim != 2]
    opt = Partitioned([descentlab.ScheduleFreeAdamW(weights, lr=0.01), descentlab.AdamW(biases, lr=0.01)])
    history = fit(model, data.train, opt, loss="cross_entropy", epochs=2, batch_size=BATCH, val=data.val,
                  seed=SEED, progress=False)
    at_x = [p.detach().clone() for p in model.parameters()]
    assert evaluate(model, data.val, LOSS, False)["loss"] == history.epochs[-1]["val_loss"]
    assert opt.parts[0].param_groups[0]["train_mode"] is False
    opt.train()
    moved = [not torch.equal(a, b) for a, b in zip(at_x, model.parameters())]
    assert moved == [p.ndim == 2 for p in model.parameters()]  # only the schedule-free part's weights switch
    assert evaluate(model, data.val, LOSS, False)["loss"] != history.epochs[-1]["val_loss"]


def test_muon_split_has_no_switch():
    model = models.build("mlp", 4, 3, seed=0, hidden=(8,))
    assert not has_train_eval_switch(split_matrices("muon", model, 0.02, {}))


@pytest.mark.skipif(schedulefree is None, reason="schedulefree is not installed (pip install -e '.[test]')")
def test_the_packages_optimizer_starts_in_eval_mode_and_trains_through_fit_as_ours(data):
    """schedulefree.AdamWScheduleFree refuses step() until train(): fit switches it as it switches ours, with the
    same numbers (ours equals the package to the bit)."""
    results = []
    for build in (lambda p: schedulefree.AdamWScheduleFree(p, lr=0.01),
                  lambda p: descentlab.ScheduleFreeAdamW(p, lr=0.01)):
        model = models.build("mlp", data.n_features, data.n_outputs, seed=0, hidden=(16,))
        opt = build(model.parameters())
        history = fit(model, data.train, opt, loss="cross_entropy", epochs=2, batch_size=BATCH, val=data.val,
                      seed=SEED, progress=False)
        assert opt.param_groups[0]["train_mode"] is False
        results.append(([row["val_loss"] for row in history.epochs], _weights(model)))
    (losses_pkg, w_pkg), (losses_ours, w_ours) = results
    assert losses_pkg == losses_ours
    assert all(torch.equal(a, b) for a, b in zip(w_pkg, w_ours))


class Killed(Exception):
    pass


def _run(data, folder, kill_at=None):
    model, opt = _setup(data)

    def callback(step):
        if step == kill_at:
            raise Killed(step)

    history = fit(model, data.train, opt, loss="cross_entropy", epochs=EPOCHS, batch_size=BATCH, val=data.val,
                  seed=SEED, progress=False, checkpoint_dir=folder, checkpoint_every=4, keep_last=50,
                  step_callback=callback)
    return model, opt, history


@pytest.mark.parametrize("kill_at, last", [(12, 11), (18, 16)])  # after an epoch-end / a mid-epoch checkpoint
def test_checkpoints_are_in_eval_mode_and_a_resume_is_bit_exact(data, tmp_path, kill_at, last):
    model_ref, _, history_ref = _run(data, tmp_path / "ref")
    with pytest.raises(Killed):
        _run(data, tmp_path / "run", kill_at=kill_at)
    ck = load_latest_checkpoint(tmp_path / "run")
    assert ck["step"] == last
    # stored in eval mode: "model" is x, the optimizer says so, "train_model" is the y training continues from
    assert all(g["train_mode"] is False for g in ck["optimizer"]["param_groups"])
    check, opt_check = _setup(data)
    check.load_state_dict(ck["model"])
    opt_check.load_state_dict(ck["optimizer"])
    opt_check.train()
    for key, y in ck["train_model"].items():
        assert not torch.equal(ck["model"][key], y)
        assert torch.allclose(check.state_dict()[key], y, rtol=0, atol=1e-6)  # train() from x lands at y
    model, opt, history = _run(data, tmp_path / "run")  # resumes from the checkpoint
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_ref.parameters()))
    untimed = [{k: v for k, v in row.items() if k not in ("seconds", "epoch_seconds")} for row in history.epochs]
    assert untimed == [{k: v for k, v in row.items() if k not in ("seconds", "epoch_seconds")}
                       for row in history_ref.epochs]
    assert [s["loss"] for s in history.steps] == [s["loss"] for s in history_ref.steps]
    # every checkpoint of the uninterrupted run holds x with the exact y, the resumed run's the same bits
    for path in list_checkpoints(tmp_path / "ref"):
        ours = torch.load(tmp_path / "run" / path.name, weights_only=True)
        ref = torch.load(path, weights_only=True)
        for key in ("model", "train_model"):
            assert all(torch.equal(ref[key][k], ours[key][k]) for k in ref[key]), (path.name, key)


WORKER = Path(__file__).with_name("schedulefree_worker.py")


def _worker(ckpt, out, pause=0.0):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), str(pause)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_real_kill_mid_run_resumes_bit_exactly(tmp_path):
    reference = _worker(tmp_path / "ref", tmp_path / "ref.pt")
    assert reference.wait(timeout=180) == 0, reference.stderr.read()
    victim = _worker(tmp_path / "run", tmp_path / "run.pt", pause=0.002)
    for line in victim.stdout:  # kill -9 in the second epoch, past an epoch-end (eval-mode) checkpoint
        if int(line) >= 30:
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL and not (tmp_path / "run.pt").exists()
    assert load_latest_checkpoint(tmp_path / "run")["epoch"] >= 1
    time.sleep(0.01)
    resumed = _worker(tmp_path / "run", tmp_path / "run.pt")
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read()
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "run.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_a_batchnorm_model_is_warned_about_and_a_plain_optimizer_is_not(data):
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(data.n_features, 8), torch.nn.BatchNorm1d(8),
                                   torch.nn.Linear(8, data.n_outputs))

    model = net()
    with pytest.warns(UserWarning, match=r"BatchNorm running statistics of 1 are gathered at y"):
        fit(model, data.train, descentlab.ScheduleFreeAdamW(model.parameters(), lr=0.01), loss="cross_entropy",
            epochs=1, batch_size=BATCH, progress=False)
    import warnings

    model = net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, data.train, descentlab.Adam(model.parameters(), lr=0.01), loss="cross_entropy", epochs=1,
            batch_size=BATCH, progress=False)
