"""A schedule-free training process for the kill-and-resume test of ``tests/test_train_schedulefree_eval.py``:
``python schedulefree_worker.py CKPT_DIR OUT_FILE [SLEEP]``. Prints the global step after every optimizer step
(flushed), then sleeps SLEEP seconds; at the end saves the returned model (x), the optimizer's z and the model
switched back to train mode (y)."""

import sys
import time

import torch

import descentlab
from descentlab import datasets, models

ckpt, out = sys.argv[1], sys.argv[2]
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
torch.set_num_threads(1)


def report_step(step):
    print(step, flush=True)
    if pause:
        time.sleep(pause)


data = datasets.load("breast_cancer", seed=0)
model = models.build("mlp", data.n_features, data.n_outputs, seed=0, hidden=(16,))
opt = descentlab.ScheduleFreeAdamW(model.parameters(), lr=0.01, warmup_steps=5)
descentlab.fit(model, data.train, opt, loss="cross_entropy", epochs=4, batch_size=32, seed=7, val=data.val,
               checkpoint_dir=ckpt, checkpoint_every=4, keep_last=2, progress=False, step_callback=report_step)
saved = {f"x.{k}": v.clone() for k, v in model.state_dict().items()}
saved.update({f"z.{i}": opt.state[p]["z"].clone() for i, p in enumerate(model.parameters())})
opt.train()
saved.update({f"y.{k}": v.clone() for k, v in model.state_dict().items()})
torch.save(saved, out)
