"""``fit``: batch, stochastic or mini-batch gradient descent on real data, with history, progress,
atomic checkpoints and exact resume.

Exactness of resume rests on three facts: the data order of an epoch is a pure function of
``(seed, epoch)`` (:func:`descentlab.data.epoch_order`); a schedule is a pure function of its clock;
and a checkpoint holds everything else that changes — model, optimizer state, RNG states, the position
(epoch, batch, step) and the history. A run killed anywhere and resumed from its last checkpoint
therefore replays exactly the steps an uninterrupted run takes, and ends with bit-identical weights.

Data-parallel (``distributed=True``, inside a torch.distributed process group): every rank draws the same
seeded epoch order, takes its contiguous share of each global batch, and trains the model wrapped in
``DistributedDataParallel``; each rank's mean loss is weighted by its share, so the all-reduced gradient is
the gradient of the mean loss over the global batch — what one process computes, up to float rounding.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from descentlab.data.batches import MiniBatches, check_batch_size
from descentlab.schedules import check_unit
from descentlab.train.closure import ClosureStep, FirstLossNotFinite, needs_closure
from descentlab.train.checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint
from descentlab.train.eval_switch import EvalWeights
from descentlab.train.history import History
from descentlab.train.losses import LossFn, get_loss
from descentlab.train.progress import Progress

NONFINITE_ACTIONS = ("stop", "skip")


class TrainingDiverged(FloatingPointError):
    """A non-finite loss (or non-finite weights) stopped training (``on_nonfinite="stop"``). ``history`` holds
    every step and epoch up to it; ``step`` is the step whose loss was not finite and ``value`` that loss;
    ``checkpoint`` the last checkpoint written (the last finite state), if any."""

    def __init__(self, message: str, *, history: Any = None, step: int | None = None, value: float | None = None,
                 checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.history, self.step, self.value, self.checkpoint = history, step, value, checkpoint


def _rng_state() -> dict[str, Any]:
    """The RNG states as tensors and lists (what ``torch.load(weights_only=True)`` reads back)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                      float(gauss)],
            "python": [int(version), [int(v) for v in internal], gauss_next]}


def _set_rng_state(state: dict[str, Any]) -> None:
    name, keys, pos, has_gauss, gauss = state["numpy"]
    version, internal, gauss_next = state["python"]
    torch.set_rng_state(state["torch"])
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))


_FIELDS: dict[str, Any] = {"config": dict, "model": dict, "optimizer": dict, "history": dict, "epoch": int,
                           "batch": int, "step": int, "samples": int, "seconds": (int, float), "skipped": int,
                           "base_lrs": list, "rng": dict}


def _check_payload(ck: dict[str, Any], epochs: int, n_batches: int, n_groups: int) -> None:
    """Refuse a checkpoint whose fields are missing, of the wrong type or inconsistent with each other (a
    position past the run's end, a batch past the epoch's, a step count that is not the history's)."""
    path = ck["path"]
    for key, kind in _FIELDS.items():
        if key not in ck:
            raise ValueError(f"checkpoint {path} is malformed: it has no {key!r}")
        value = ck[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"checkpoint {path} is malformed: {key!r} is {type(value).__name__}")
    for key in ("epoch", "batch", "step", "samples", "skipped"):
        if ck[key] < 0:
            raise ValueError(f"checkpoint {path} is malformed: {key} = {ck[key]} is negative")
    if not (math.isfinite(ck["seconds"]) and ck["seconds"] >= 0):
        raise ValueError(f"checkpoint {path} is malformed: seconds = {ck['seconds']!r}")
    if ck["batch"] >= n_batches:
        raise ValueError(f"checkpoint {path} is malformed: batch = {ck['batch']}, but an epoch has {n_batches} "
                         f"batches (0..{n_batches - 1})")
    if ck["step"] + ck["skipped"] != ck["epoch"] * n_batches + ck["batch"]:
        raise ValueError(f"checkpoint {path} is malformed: step {ck['step']} (+ {ck['skipped']} skipped) is not "
                         f"the position epoch {ck['epoch']}, batch {ck['batch']} of {n_batches} a batch")
    history = ck["history"]
    if not isinstance(history.get("steps"), list) or len(history["steps"]) != ck["step"] or not isinstance(
            history.get("epochs"), list) or len(history["epochs"]) != ck["epoch"]:
        raise ValueError(f"checkpoint {path} is malformed: its history does not match step {ck['step']}, "
                         f"epoch {ck['epoch']}")
    if ck["epoch"] > epochs or (ck["epoch"] == epochs and ck["batch"] > 0):
        raise ValueError(f"checkpoint {path} is past the end of this run: it has trained {ck['epoch']} epochs, "
                         f"this run has epochs = {epochs}; ask for at least {ck['epoch']} epochs to resume it")
    lrs = ck["base_lrs"]
    if len(lrs) != n_groups or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in lrs):
        raise ValueError(f"checkpoint {path} is malformed: base_lrs = {lrs!r}")
    rng = ck["rng"]
    try:
        ok = (isinstance(rng["torch"], torch.Tensor) and len(rng["numpy"]) == 5 and len(rng["python"]) == 3
              and isinstance(rng["numpy"][1], torch.Tensor))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"checkpoint {path} is malformed: its RNG states are not tensors and lists")


def _first_difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first key (in sorted order) whose values differ between the two dicts, or None."""
    for key in sorted(set(saved) | set(current), key=str):
        if saved.get(key) != current.get(key):
            return key
    return None


def _finite_weights(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point() or p.is_complex())


def _set_rates(optimizer: torch.optim.Optimizer, schedule: Callable[[int], float], t: int,
               base_lrs: list[float]) -> float:
    """Group 0 gets ``schedule(t)``; other groups keep their initial ratio to group 0."""
    value = float(schedule(t))
    for i, group in enumerate(optimizer.param_groups):
        rate = value if i == 0 else value * base_lrs[i] / base_lrs[0]
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(rate)
        else:
            group["lr"] = rate
    return value


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Sequence[torch.Tensor], loss_fn: LossFn,
             accuracy: bool, chunk: int = 4096) -> dict[str, float]:
    """Mean loss (and accuracy) of ``model`` on ``data``, in eval mode, by chunks."""
    x, y = data
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), chunk):
        out = model(x[i:i + chunk])
        total += float(loss_fn(out, y[i:i + chunk])) * len(out)
        if accuracy:
            correct += int((out.argmax(1) == y[i:i + chunk]).sum())
    model.train(was_training)
    result = {"loss": total / len(x)}
    if accuracy:
        result["accuracy"] = correct / len(x)
    return result


def _group(distributed: bool) -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when not ``distributed``."""
    if not distributed:
        return 0, 1
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("distributed=True needs an initialised torch.distributed process group "
                         "(e.g. descentlab.distributed.process_group); got none")
    return dist.get_rank(), dist.get_world_size()


def _share_loss(net: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, rank: int,
                world: int) -> tuple[torch.Tensor, float]:
    """This rank's weighted loss on its contiguous share of the global batch, and the global mean loss.

    With ``n_r`` of the batch's ``B`` samples, the local mean loss is scaled by ``world · n_r / B``: DDP
    averages gradients over ranks, so the result is ``Σ_r (n_r / B) ∇L_r`` = the gradient of the mean over
    ``B`` (the scale is exactly 1 when the shares are equal). A rank with an empty share contributes zero.
    """
    lo, hi = rank * len(x) // world, (rank + 1) * len(x) // world
    out = net(x[lo:hi])
    if hi > lo:
        value = loss_fn(out, y[lo:hi]) * (world * (hi - lo) / len(x))
    else:  # all parameters still take part in DDP's all-reduce, with zero gradients
        value = out.sum() * 0.0
    total = value.detach().clone()
    dist.all_reduce(total)
    return value, float(total) / world


def _any_rank(flag: bool, distributed: bool) -> bool:
    """``flag`` on one process; whether it holds on any rank when ``distributed`` (so all ranks agree)."""
    if not distributed:
        return flag
    value = torch.tensor(float(flag))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)


def _check_same_start(step: int, checkpoint_dir: str | Path) -> None:
    """Every rank must resume from the same checkpoint (they must see the same ``checkpoint_dir``)."""
    steps: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(steps, step)
    if len(set(steps)) > 1:
        raise ValueError(f"ranks resumed from different checkpoints in {checkpoint_dir} (steps by rank: {steps}); "
                         "every rank must see the same checkpoint folder")


def fit(model: torch.nn.Module, data: Any, optimizer: torch.optim.Optimizer, *, loss: str | LossFn, epochs: int,
        batch_size: int | str = "full", schedule: Callable[[int], float] | None = None, schedule_unit: str = "epoch",
        val: tuple[torch.Tensor, torch.Tensor] | None = None, accuracy: bool = False, seed: int = 0,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None, keep_last: int = 3,
        resume: bool = True, on_nonfinite: str = "stop", progress: bool = True,
        step_callback: Callable[[int], None] | None = None, max_seconds: float | None = None,
        distributed: bool = False, run_config: dict[str, Any] | None = None) -> History:
    """Train ``model`` on ``data`` with ``optimizer``; return the :class:`History`.

    Args:
        data: ``(x, y)`` tensors or a map-style Dataset yielding ``(x, y)``.
        loss: ``"mse"`` (the mean), ``"cross_entropy"``, ``"mean_output"`` or a callable ``(output, y)``.
        epochs: passes over the data (the run ends after this many, counting resumed ones).
        batch_size: ``"full"`` (batch GD), ``1`` (stochastic GD) or an integer (mini-batch GD);
            ``"auto"`` asks :func:`descentlab.suggest_batch_size` (the choice and its reason are kept in the
            returned History's ``batch_size_choice``).
        schedule: a callable ``t -> lr`` (e.g. from :mod:`descentlab.schedules`); ``t`` counts epochs or
            steps from 0 as ``schedule_unit`` says. Group 0 gets ``schedule(t)``, other groups keep
            their initial ratio to group 0.
        val: validation ``(x, y)`` evaluated at each epoch end; ``accuracy`` adds classification accuracy.
        checkpoint_dir: where checkpoints go (atomic, last ``keep_last`` kept); every epoch end and,
            with ``checkpoint_every=k``, every ``k`` steps. With ``resume=True`` a run restarts from the
            newest checkpoint there and ends bit-identical to an uninterrupted one.
        on_nonfinite: ``"stop"`` raises :class:`TrainingDiverged` naming epoch, step and rate (the last
            checkpoint stays the last good one); ``"skip"`` drops the step and counts it.
        progress: a progress bar on a terminal (quiet otherwise).
        step_callback: called with the global step after every optimizer step (tests use it).
        max_seconds: a wall-time budget: training stops after the step that exhausts it, the interrupted
            epoch is evaluated and recorded with ``"partial": True`` (and no checkpoint is written for it).
        distributed: data-parallel training on the initialised default process group
            (:func:`descentlab.distributed.process_group`). Call ``fit`` on every rank with the same
            arguments and identically initialised ``model``/``optimizer``: each rank takes its contiguous share
            of every global batch (``batch_size`` is the global batch; shares may differ by one sample, and a
            rank may get none of a small last batch), the model is wrapped in ``DistributedDataParallel``,
            and each rank's loss is weighted by its share so that the gradient is that of the mean loss over
            the global batch (a callable ``loss`` must be a mean over samples). The loss recorded is the
            global one; every rank returns the same History; only rank 0 writes checkpoints, and on resume
            every rank loads the newest one (they must all see ``checkpoint_dir``).
        run_config: a description of the run (plain values: names, numbers, strings, lists) stored in every
            checkpoint; resuming from a checkpoint made with another one raises ``ValueError`` naming the
            first entry that differs and both values.

    An optimizer that needs ``step(closure)`` (L-BFGS: :func:`descentlab.train.closure.needs_closure`) is stepped
    with a closure on each batch (zero the gradients, the batch's loss, ``backward()``, return the loss), which it
    may call several times per step; each epoch's row then holds ``evaluations``, the closure evaluations so far.

    An optimizer with a train / eval switch (schedule-free: :func:`descentlab.train.eval_switch.has_train_eval_switch`)
    is used as facebookresearch's ``schedulefree`` package says: gradients are taken in train mode (the parameters
    hold y), and before every evaluation (the epoch's training and validation loss and accuracy) and every
    checkpoint ``optimizer.eval()`` puts the averaged weights x in the model, ``optimizer.train()`` puts y back
    before the next step — bit for bit (the exact y is kept and copied back, so evaluating never changes the
    training trajectory). Checkpoints are stored in eval mode as the package asks: ``"model"`` holds x and the
    optimizer state says eval mode (its ``train_mode``), and ``"train_model"`` holds the exact y that a resume
    continues from. ``fit`` returns with the optimizer in eval mode and the model at x (the weights to test and
    deploy): call ``optimizer.train()`` before stepping it again (``fit`` itself does). BatchNorm: descentlab's
    models have none; in a model of yours with BatchNorm the running statistics are those gathered during
    training, at y — ``fit`` does not recompute them at x (the package's caveat: recompute them with forward passes
    in ``model.train()`` mode after ``optimizer.eval()``, or use PreciseBN), so such a model is evaluated at x
    with y's statistics, and ``fit`` warns that it is.

    A checkpoint's fields are checked on resume (types, a position inside the run, a step count matching the
    history; optimizer state as the constructor checks its arguments) and a bad one is refused by name.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    check_unit(schedule_unit)
    if on_nonfinite not in NONFINITE_ACTIONS:
        raise ValueError(f"on_nonfinite must be one of 'stop', 'skip'; got {on_nonfinite!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer or None, got {checkpoint_every!r}")
    if schedule is not None and not callable(schedule):
        raise ValueError(f"schedule must be a callable t -> lr, got {schedule!r}")
    loss_fn = get_loss(loss)
    if not isinstance(distributed, bool):
        raise ValueError(f"distributed must be True or False, got {distributed!r}")
    rank, world = _group(distributed)
    if isinstance(data, (tuple, list)) and len(data) != 2:
        raise ValueError("data must be (x, y) tensors or a Dataset yielding (x, y)")
    size = check_batch_size(batch_size)
    if size == "auto":
        from descentlab.data.batch_size import suggest_batch_size

        x0, y0 = data if isinstance(data, (tuple, list)) else MiniBatches(data, "full").batches(0).__next__()
        advice = suggest_batch_size(model, x0[:64], y0[:64], loss_fn, n_samples=len(x0))
        choice: list[dict[str, Any]] = [{"batch_size": advice.batch_size, "n_samples": len(x0),
                                         "reason": advice.reason}]
        if distributed:  # timings differ between ranks: all follow rank 0's choice
            dist.broadcast_object_list(choice, src=0)
        chosen: dict[str, Any] | None = choice[0]
        size = choice[0]["batch_size"]
    else:
        chosen = None
    batches = MiniBatches(data, size, seed=seed)
    base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
    if schedule is not None and len(base_lrs) > 1 and base_lrs[0] == 0:
        raise ValueError("with several param groups, group 0's lr sets the ratios and must not be 0")

    history = History()
    start_epoch, start_batch, step, samples, elapsed, skipped = 0, 0, 0, 0, 0.0, 0
    evaluations = 0  # closure evaluations so far (optimizers stepped through step(closure))
    config = {"seed": seed, "batch_size": batches.batch_size, "n": batches.n, "schedule_unit": schedule_unit}
    last_checkpoint: list[str] = []
    switch = EvalWeights(optimizer, model)  # schedule-free: evaluate and checkpoint at x, step at y
    if checkpoint_dir is not None and resume:
        ck = load_latest_checkpoint(checkpoint_dir)
        if ck is not None:
            for saved, wanted in ((ck.get("config"), config), (ck.get("run"), run_config)):
                if wanted is None:
                    continue
                if not isinstance(saved, dict):
                    raise ValueError(f"checkpoint {ck['path']} is malformed: it holds no run configuration")
                key = _first_difference(saved or {}, wanted)
                if key is not None:
                    raise ValueError(f"checkpoint {ck['path']} was made with {key} = {(saved or {}).get(key)!r}, "
                                     f"this run has {key} = {wanted.get(key)!r}; resume with the same setting, "
                                     "or use another checkpoint_dir or resume=False")
            _check_payload(ck, epochs, len(batches), len(optimizer.param_groups))
            try:
                model.load_state_dict(ck["model"])
            except RuntimeError as err:
                raise ValueError(f"checkpoint {ck['path']} holds another model's weights: "
                                 f"{str(err).splitlines()[0]}") from None
            try:
                optimizer.load_state_dict(ck["optimizer"])
            except (KeyError, TypeError) as err:
                raise ValueError(f"checkpoint {ck['path']} holds a malformed optimizer state ({err!r})") from None
            except ValueError as err:
                raise ValueError(f"checkpoint {ck['path']}: {err}") from None
            train_model = ck.get("train_model")
            if train_model is not None and not isinstance(train_model, dict):
                raise ValueError(f"checkpoint {ck['path']} is malformed: 'train_model' is {type(train_model).__name__}")
            try:  # a checkpoint at the evaluation weights (x): back to train mode at its exact y
                switch.resume(train_model)
            except RuntimeError as err:
                raise ValueError(f"checkpoint {ck['path']} holds another model's training weights: "
                                 f"{str(err).splitlines()[0]}") from None
            try:
                history = History.from_state_dict(ck["history"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"checkpoint {ck['path']} holds a malformed history ({err!r})") from None
            start_epoch, start_batch, step = ck["epoch"], ck["batch"], ck["step"]
            samples, elapsed, skipped, base_lrs = ck["samples"], ck["seconds"], ck["skipped"], ck["base_lrs"]
            evaluations = ck.get("evaluations", 0)
            if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 0:
                raise ValueError(f"checkpoint {ck['path']} is malformed: evaluations = {evaluations!r} (an integer "
                                 ">= 0: the closure evaluations so far)")
            _set_rng_state(ck["rng"])
            last_checkpoint.append(ck["path"])
        if distributed:
            _check_same_start(step, checkpoint_dir)
    elif checkpoint_dir is not None and list_checkpoints(checkpoint_dir):
        raise FileExistsError(f"{checkpoint_dir} already holds checkpoints; pass resume=True or another folder")

    history.batch_size_choice = chosen

    def diverged(message: str, at: int, value: float) -> TrainingDiverged:
        where = (f"the last checkpoint ({Path(last_checkpoint[-1]).name}) is the last good state"
                 if last_checkpoint else "no checkpoint holds a good state yet")
        return TrainingDiverged(f"{message}; {where}", history=history, step=at, value=value,
                                checkpoint=last_checkpoint[-1] if last_checkpoint else None)

    def checkpoint(epoch: int, batch: int) -> None:
        if checkpoint_dir is None:
            return
        if on_nonfinite == "stop" and not _finite_weights(model):  # never a non-finite "last good state"
            raise diverged(f"non-finite weights after step {step}, epoch {epoch}", step, math.nan)
        if rank != 0:
            return
        was_at_eval = switch.at_eval
        switch.to_eval()  # schedule-free: stored in eval mode (x), as the package asks, with the exact y beside it
        payload = {"config": config, "run": run_config, "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "history": history.state_dict(), "epoch": epoch,
                   "batch": batch, "step": step, "samples": samples, "seconds": elapsed + time.perf_counter() - t0,
                   "skipped": skipped, "base_lrs": [float(v) for v in base_lrs], "rng": _rng_state()}
        if switch.train_state is not None:
            payload["train_model"] = switch.train_state
        if closure_step is not None:
            payload["evaluations"] = closure_step.evaluations
        try:
            last_checkpoint.append(str(save_checkpoint(checkpoint_dir, step, payload, keep_last)))
        finally:
            if not was_at_eval:
                switch.to_train()

    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    closure_step = ClosureStep(optimizer, evaluations) if needs_closure(optimizer) else None
    t0 = time.perf_counter()
    bar = Progress(total=epochs * len(batches), initial=start_epoch * len(batches) + start_batch,
                   enabled=progress and rank == 0)
    model.train()
    out_of_time = False
    try:
        for epoch in range(start_epoch, epochs):
            switch.to_train()  # y back in the parameters (bit for bit) before the epoch's first step
            if schedule is not None and schedule_unit == "epoch":
                _set_rates(optimizer, schedule, epoch, base_lrs)
            epoch_start = time.perf_counter()
            for b, (x, y) in enumerate(batches.batches(epoch, start_batch), start=start_batch):
                if schedule is not None and schedule_unit == "step":
                    _set_rates(optimizer, schedule, step, base_lrs)
                lr = float(optimizer.param_groups[0]["lr"])
                optimizer.zero_grad(set_to_none=True)

                def loss_of(x: torch.Tensor = x, y: torch.Tensor = y) -> tuple[torch.Tensor, float]:
                    if distributed:
                        return _share_loss(net, loss_fn, x, y, rank, world)
                    out = loss_fn(model(x), y)
                    return out, out.item() if not out.requires_grad else out.detach().item()

                if closure_step is not None:  # step(closure): the step evaluates the loss itself (L-BFGS)
                    try:
                        current = closure_step(loss_of)
                    except FirstLossNotFinite as err:  # nothing was stepped
                        current = err.value
                else:
                    value, current = loss_of()
                if not math.isfinite(current):
                    if on_nonfinite == "stop":
                        raise diverged(f"non-finite loss ({current}) at epoch {epoch}, step {step + 1}, "
                                       f"learning rate {lr:g}", step + 1, current)
                    skipped += 1
                    continue
                if closure_step is None:
                    value.backward()
                    optimizer.step()
                step += 1
                samples += len(x)
                now = elapsed + time.perf_counter() - t0
                history.record_step(step=step, epoch=epoch, loss=current, lr=lr, samples=samples, seconds=now)
                bar.update(current, lr, samples, now)
                if step_callback is not None:
                    step_callback(step)
                if checkpoint_every and step % checkpoint_every == 0 and b + 1 < len(batches):
                    checkpoint(epoch, b + 1)
                if max_seconds is not None and _any_rank(now >= max_seconds, distributed):
                    out_of_time = b + 1 < len(batches)
                    break
            epoch_seconds = time.perf_counter() - epoch_start  # the steps only, not the evaluation below
            start_batch = 0
            row: dict[str, Any] = {"epoch": epoch, **({"partial": True} if out_of_time else {})}
            switch.to_eval()  # schedule-free: the metrics (and the checkpoint below) at the averaged weights x
            train_eval = evaluate(model, data if isinstance(data, (tuple, list)) else next(
                MiniBatches(data, "full", shuffle=False).batches(0)), loss_fn, accuracy)
            row.update({f"train_{k}": v for k, v in train_eval.items()})
            if on_nonfinite == "stop" and not math.isfinite(train_eval["loss"]):
                raise diverged(f"non-finite loss ({train_eval['loss']}) at epoch {epoch}, step {step}, learning rate "
                               f"{float(optimizer.param_groups[0]['lr']):g} (the training loss at the epoch's end)",
                               step, train_eval["loss"])
            if val is not None:
                row.update({f"val_{k}": v for k, v in evaluate(model, val, loss_fn, accuracy).items()})
            row.update({"lr": float(optimizer.param_groups[0]["lr"]), "steps": step, "samples": samples,
                        "seconds": elapsed + time.perf_counter() - t0, "epoch_seconds": epoch_seconds,
                        "skipped_steps": skipped})
            if closure_step is not None:  # evaluations of the loss and its gradient so far (several per step)
                row["evaluations"] = closure_step.evaluations
            history.record_epoch(row)
            if out_of_time:
                break
            checkpoint(epoch + 1, 0)
            if max_seconds is not None and _any_rank(elapsed + time.perf_counter() - t0 >= max_seconds, distributed):
                break
        switch.to_eval()  # the model returned holds the weights to test and deploy (x); a no-op when already there
    except BaseException:
        switch.to_train()  # an interrupted run leaves the model where training stood (y), in train mode
        raise
    finally:
        bar.close()
    return history
